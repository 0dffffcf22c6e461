"""CSRF tokens for the dashboard's state-changing requests.

One random token per session; every state-changing request of a route whose
policy checks CSRF must carry it, as the form field `csrf_token` (forms that
work without JavaScript) or the `X-CSRF-Token` header (htmx requests, added by
app.js from the page's meta tag). The JSON API needs none: it authenticates
with bearer tokens, which a browser never sends on its own.

But with access control off there is no token to hold back a hostile page:
a `text/plain` form post needs no preflight. So an open service accepts no
state change that a browser says came from another site's page
(`cross_site`): its `Origin` names neither this host nor a CORS-allowed
origin, or, without an Origin, its `Sec-Fetch-Site` says cross-site.
Backends send neither. With access control on, tokens and the CSRF token
already stop such a page, and a proxy that rewrites `Host` breaks nothing.
"""
from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from flask import request, session

from ..core.settings import Settings
from . import SAFE_METHODS

SESSION_KEY = "csrf_token"


def session_csrf_token() -> str:
    """This session's token, made on first use."""
    token = session.get(SESSION_KEY)
    if not token:
        token = session[SESSION_KEY] = secrets.token_urlsafe(32)
    return token  # type: ignore[no-any-return]


def carries_csrf_token() -> bool:
    """Whether the request is safe, or carries this session's token."""
    if request.method in SAFE_METHODS:
        return True
    sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token") or ""
    expected = session.get(SESSION_KEY) or ""
    return bool(expected) and hmac.compare_digest(sent.encode(), expected.encode())


def cross_site(settings: Settings) -> bool:
    """Whether a browser sent this state change from a page of another site (see the module docstring)."""
    if request.method in SAFE_METHODS:
        return False
    origin = request.headers.get("Origin")
    if origin is None:
        return request.headers.get("Sec-Fetch-Site") == "cross-site"
    if origin in settings.cors_origins:
        return False
    return _authority(origin) != _authority(f"{request.scheme}://{request.host}")  # `null` is no authority


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _authority(url: str) -> tuple[str, int] | None:
    """Host and port of an origin, the scheme's default port filled in; None for what is no origin."""
    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    return (parts.hostname or "", port) if parts.hostname and port else None
