"""Security headers on every response.

The Content-Security-Policy allows only our own scripts and styles: HTMX and
the dashboard's scripts are static files, with no inline code.

`Cache-Control: no-store` on everything but what a route's policy declares
cacheable (the static files and the public API description): pages,
fragments, exports and API answers carry events, metrics or a session's CSRF
token, which no browser or shared cache may keep (a shared computer's back
button, a proxy's disk).
"""
from __future__ import annotations

from flask import Flask, Response, request

from ..core.settings import Settings

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


HSTS = ("Strict-Transport-Security", "max-age=31536000")


def init_app(app: Flask, settings: Settings) -> None:
    production = settings.production
    defaults = list(SECURITY_HEADERS.items())

    @app.after_request
    def add_security_headers(response: Response) -> Response:
        """Each header a view did not set itself: one pass over the response's headers, one extend.
        HSTS in production and on any answer over HTTPS, like the session cookie's `Secure`."""
        headers = response.headers
        present = {name.lower() for name, _ in headers.items()}
        wanted = [*defaults, HSTS] if production or request.is_secure else defaults
        headers.extend([(name, value) for name, value in wanted if name.lower() not in present])
        declared = request.policy  # type: ignore[attr-defined]
        if declared is None or not declared.cacheable:
            headers["Cache-Control"] = "no-store"
        return response
