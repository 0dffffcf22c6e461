"""The dashboard's login: HTTP Basic with ADMIN_USERNAME and ADMIN_PASSWORD_HASH.

It applies whenever API access control is on (see app/auth.py), so a
deployment that guards its API with tokens does not leave the same data
open in the dashboard. Basic auth needs no form, session or CSRF token, and
the browser repeats it on every htmx request. A password verified once is
remembered by digest in the process, so the deliberately slow hash is not
recomputed on every poll.
"""
from __future__ import annotations

import hashlib
import hmac

from flask import Response, current_app, request
from werkzeug.security import check_password_hash

from ..auth import access_control_enabled
from . import bp

REALM = 'Basic realm="Activity tracker dashboard", charset="UTF-8"'

_verified: set[bytes] = set()


def _digest(stored_hash: str, username: str, password: str) -> bytes:
    return hashlib.sha256("\0".join((stored_hash, username, password)).encode()).digest()


def credentials_valid(username: str, password: str) -> bool:
    """Whether these are the configured admin's name and password; compared in constant time."""
    config = current_app.config
    stored_hash = config["ADMIN_PASSWORD_HASH"]
    if not stored_hash:
        return False
    digest = _digest(stored_hash, username, password)
    if any(hmac.compare_digest(digest, known) for known in _verified):
        return True
    name_ok = hmac.compare_digest(username.encode(), config["ADMIN_USERNAME"].encode())
    if check_password_hash(stored_hash, password) and name_ok:
        _verified.add(digest)
        return True
    return False


@bp.before_request
def require_login() -> Response | None:
    """Ask for the admin's name and password when access control is on."""
    if not access_control_enabled(current_app.config):
        return None
    auth = request.authorization
    if auth is not None and auth.type == "basic" and credentials_valid(auth.username or "", auth.password or ""):
        return None
    return Response("Sign in with the dashboard's admin name and password.\n", status=401,
                    mimetype="text/plain", headers={"WWW-Authenticate": REALM})
