"""The dashboard's login: the admin's name and password, then a session cookie.

Whenever API access control is on (see app/http/auth.py) every dashboard page
needs a signed-in session, so a deployment that guards its API with tokens
does not leave the same data open here. The session cookie is HttpOnly,
SameSite=Lax, and Secure in production; signing in starts a fresh session.
"""
from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from flask import Response, redirect, render_template, request, session, url_for
from werkzeug.security import check_password_hash
from werkzeug.wrappers import Response as BaseResponse

from ..extensions import settings
from . import bp
from .rendering import wants_fragment

OPEN_ENDPOINTS = frozenset({"web.login"})


def credentials_valid(username: str, password: str) -> bool:
    """Whether these are the configured admin's name and password; the name is compared in constant time."""
    config = settings()
    stored_hash = config.admin_password_hash
    name_ok = hmac.compare_digest(username.encode(), config.admin_username.encode())
    password_ok = bool(stored_hash) and check_password_hash(stored_hash, password)
    return name_ok and password_ok


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an absolute or protocol-relative URL (no open redirect)."""
    parts = urlsplit(target or "")
    if not target or parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return url_for("web.events")
    return target


def require_login() -> BaseResponse | None:
    """Send visitors without a session to the login page (htmx requests are told to go there)."""
    if not settings().access_control_enabled or request.endpoint in OPEN_ENDPOINTS:
        return None
    if session.get("user"):
        return None
    login_url = url_for("web.login", next=request.full_path.rstrip("?"))
    if wants_fragment():
        return Response("Sign in again.", status=401, headers={"HX-Redirect": login_url})
    return redirect(login_url)


@bp.route("/login", methods=["GET", "POST"])
def login() -> BaseResponse | str | tuple[str, int]:
    target = _safe_next(request.values.get("next"))
    if request.method == "GET":
        return render_template("login.html", next=target, error=None, username="", active=None)
    username = request.form.get("username", "")
    if not credentials_valid(username, request.form.get("password", "")):
        return render_template("login.html", next=target, username=username, active=None,
                               error="That name and password do not match."), 401
    session.clear()
    session.permanent = True
    session["user"] = username
    return redirect(target, code=303)


@bp.post("/logout")
def logout() -> BaseResponse:
    session.clear()
    return redirect(url_for("web.login"), code=303)
