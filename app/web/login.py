"""The dashboard's login: the admin's name and password, then a session cookie.

Whenever API access control is on, every dashboard page but this one needs a
signed-in session (their policies say `Access.SIGNED_IN`), so a deployment
that guards its API with tokens does not leave the same data open here. The
session cookie is HttpOnly, SameSite=Lax, and Secure in production; signing
in starts a fresh session. The cookie names a sign-in recorded on the server
(app/http/signins.py), which signing out or going idle ends, so a copied
cookie dies with it. Wrong passwords slow down further attempts per user name,
except from a browser that signed in as that user before
(app/http/signin_attempts.py).
"""
from __future__ import annotations

import hmac
import logging
from urllib.parse import urlsplit

from flask import redirect, render_template, request, session, url_for
from redis.exceptions import RedisError
from werkzeug.security import check_password_hash
from werkzeug.wrappers import Response as BaseResponse

from ..extensions import settings
from ..http.errors import ApiError
from ..http.policy import Access, policy
from ..http.rate_limits import SIGN_IN_ADDRESS
from ..http.signin_attempts import known_device, payer, remember_device, signin_attempts
from ..http.signins import SIGNIN_KEY, UNAVAILABLE, USER_KEY, signins
from . import bp
from .rendering import message_response

log = logging.getLogger(__name__)


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


@bp.route("/login", methods=["GET", "POST"])
@policy(Access.OPEN, budgets=(SIGN_IN_ADDRESS,), csrf=True)
def login() -> BaseResponse | str | tuple[str, int]:
    """The form; a post claims an attempt of its payer (signin_attempts) before its password is checked."""
    target = _safe_next(request.values.get("next"))
    if request.method == "GET":
        return render_template("login.html", next=target, error=None, username="", active=None)
    username = request.form.get("username", "")
    device = known_device(username)
    paid_by = payer(username, device)
    try:
        with signin_attempts() as attempts:
            wait = attempts.claim(paid_by)
            if wait is not None:
                raise ApiError(f"Too many wrong passwords; try again in {wait} s.", status=429,
                               code="sign_in_delayed", retry_after=wait)
            if not credentials_valid(username, request.form.get("password", "")):
                return render_template("login.html", next=target, username=username, active=None,
                                       error="That name and password do not match."), 401
            attempts.succeeded(paid_by)
        with signins() as store:
            signin_id = store.start(username)
    except RedisError as exc:
        log.warning("cannot check or record a sign-in: %s", exc.__class__.__name__)
        return message_response(UNAVAILABLE, 503)
    session.clear()
    session.permanent = True
    session[USER_KEY] = username
    session[SIGNIN_KEY] = signin_id
    response = redirect(target, code=303)
    remember_device(response, username, device)
    return response


@bp.post("/logout")
@policy(Access.SIGNED_IN, budgets=(), csrf=True)
def logout() -> BaseResponse:
    """End the sign-in on the server (so copies of the cookie stop working too), then forget the cookie."""
    signin_id = session.get(SIGNIN_KEY)
    session.clear()
    if isinstance(signin_id, str):
        with signins() as store:
            store.end(signin_id)
    return redirect(url_for("web.login"), code=303)
