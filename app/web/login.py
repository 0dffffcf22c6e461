"""The dashboard's login: the admin's name and password, then a session cookie.

Whenever API access control is on (see app/http/auth.py) every dashboard page
needs a signed-in session, so a deployment that guards its API with tokens
does not leave the same data open here. The session cookie is HttpOnly,
SameSite=Lax, and Secure in production; signing in starts a fresh session.
The cookie names a sign-in recorded on the server (app/http/signins.py), which
signing out or going idle ends, so a copied cookie dies with it.
"""
from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from flask import Response, redirect, render_template, request, session, url_for
from redis.exceptions import RedisError
from werkzeug.security import check_password_hash
from werkzeug.wrappers import Response as BaseResponse

from ..extensions import guarded_redis, settings
from ..http.signins import SignIns
from . import bp
from .rendering import message_response, wants_fragment

log = logging.getLogger(__name__)

OPEN_ENDPOINTS = frozenset({"web.login"})
SIGNIN_KEY = "signin"
CANNOT_CHECK = "Sign-ins cannot be checked right now; try again in a moment."


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


@contextmanager
def _signins() -> Iterator[SignIns]:
    """The sign-in store, over the request path's Redis client: short timeouts, behind the breaker."""
    with guarded_redis() as redis:
        yield SignIns.of(redis, settings())


def _signed_in() -> bool:
    """Whether the cookie names a sign-in the server still holds, for the user the cookie names."""
    user, signin_id = session.get("user"), session.get(SIGNIN_KEY)
    if not user or not isinstance(signin_id, str):
        return False
    with _signins() as signins:
        return signins.user(signin_id) == user


def require_login() -> BaseResponse | None:
    """Send visitors without a live sign-in to the login page (htmx requests are told to go there).

    A sign-in that cannot be checked (Redis unreachable) is refused with a 503, never let through.
    """
    if not settings().access_control_enabled or request.endpoint in OPEN_ENDPOINTS:
        return None
    try:
        if _signed_in():
            return None
    except RedisError as exc:
        log.warning("cannot check a sign-in: %s", exc.__class__.__name__)
        return message_response(CANNOT_CHECK, 503)
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
    try:
        with _signins() as signins:
            signin_id = signins.start(username)
    except RedisError as exc:
        log.warning("cannot record a sign-in: %s", exc.__class__.__name__)
        return message_response(CANNOT_CHECK, 503)
    session.clear()
    session.permanent = True
    session["user"] = username
    session[SIGNIN_KEY] = signin_id
    return redirect(target, code=303)


@bp.post("/logout")
def logout() -> BaseResponse:
    """End the sign-in on the server (so copies of the cookie stop working too), then forget the cookie."""
    signin_id = session.get(SIGNIN_KEY)
    session.clear()
    if isinstance(signin_id, str):
        with _signins() as signins:
            signins.end(signin_id)
    return redirect(url_for("web.login"), code=303)
