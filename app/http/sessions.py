"""Cookie sessions for the HTML pages only; the JSON API is stateless.

With a SECRET_KEY set, Flask opens the signed cookie session on every
request, building a signing serializer each time: CPU on every API request
for a session no API route reads or writes.

The cookie is `Secure` in production and on every request that came over
HTTPS (directly, or as a trusted proxy says): a deployment behind TLS that
forgot APP_ENV still keeps its cookie off plain HTTP.
"""
from __future__ import annotations

from flask import Flask, Request, request as current_request
from flask.sessions import NullSession, SecureCookieSession, SecureCookieSessionInterface

from . import API_PREFIX


class PagesOnlySessionInterface(SecureCookieSessionInterface):
    """Flask's cookie sessions, except under /api/, where `session` is an empty, read-only null session."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | NullSession | None:
        if request.path.startswith(API_PREFIX):
            return self.make_null_session(app)
        return super().open_session(app, request)

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or current_request.is_secure
