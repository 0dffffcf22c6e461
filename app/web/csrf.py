"""CSRF tokens for the dashboard's state-changing requests.

One random token per session; every POST to the dashboard must carry it, as
the form field `csrf_token` (forms that work without JavaScript) or the
`X-CSRF-Token` header (htmx requests, added by app.js from the page's meta
tag). The JSON API is exempt: it authenticates with bearer tokens, which a
browser never sends on its own.
"""
from __future__ import annotations

import hmac
import secrets

from flask import Response, request, session

from ..http import SAFE_METHODS
from . import bp
from .rendering import message_response

SESSION_KEY = "csrf_token"


@bp.app_template_global()
def csrf_token() -> str:
    """This session's token, made on first use."""
    token = session.get(SESSION_KEY)
    if not token:
        token = session[SESSION_KEY] = secrets.token_urlsafe(32)
    return token


def check_csrf_token() -> Response | None:
    """A 400 for a state-changing request without this session's token (run first by `guard`)."""
    if request.method in SAFE_METHODS:
        return None
    sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token") or ""
    expected = session.get(SESSION_KEY) or ""
    if expected and hmac.compare_digest(sent.encode(), expected.encode()):
        return None
    return message_response("This form was stale or was not sent from this dashboard; reload the page "
                            "and try again.", 400)
