"""CORS on `/api/`, as the original service had it (go-chi/cors), for browser pages on other origins.

The original's React page is served from another origin and calls the API
with `fetch`; without these headers the browser hides every answer from it.
Only the origins listed in `CORS_ALLOWED_ORIGINS` get CORS headers (their own
origin echoed, never `*`, with credentials allowed); any other origin gets
none, so its browser blocks the answer. An empty list turns CORS
off entirely, as in the original.

A preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered by
the policy gate before any other check: browsers never send credentials with
a preflight, so an API behind tokens could otherwise never be called from a page.
"""
from __future__ import annotations

from flask import Flask, Response, request

from ..core.settings import Settings
from ..extensions import settings
from . import API_PREFIX

ALLOWED_METHODS = ("GET", "POST")
ALLOWED_HEADERS = ("Content-Type", "Authorization", "X-Request-ID")
EXPOSED_HEADERS = ("X-Request-ID", "Retry-After")
MAX_AGE_SECONDS = 300


def _under_api() -> bool:
    return request.path.startswith(API_PREFIX)


def is_preflight() -> bool:
    """A browser asking whether it may send the real request: no credentials, no body."""
    return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers


def _allowed_origin(config: Settings) -> str | None:
    origin = request.headers.get("Origin")
    return origin if origin is not None and origin in config.cors_origins else None


def answer_preflight() -> Response | None:
    """The answer to a preflight from an allowed origin under /api/; None for any other request."""
    if not (_under_api() and is_preflight() and _allowed_origin(settings())):
        return None
    response = Response(status=204)
    response.headers["Access-Control-Allow-Methods"] = ", ".join(ALLOWED_METHODS)
    response.headers["Access-Control-Allow-Headers"] = ", ".join(ALLOWED_HEADERS)
    response.headers["Access-Control-Max-Age"] = str(MAX_AGE_SECONDS)
    return response


def init_app(app: Flask, config: Settings) -> None:
    if not config.cors_origins:
        return

    @app.after_request
    def add_cors_headers(response: Response) -> Response:
        if not _under_api():
            return response
        # The answer depends on the Origin header even when it carries no CORS headers.
        response.vary.add("Origin")
        origin = _allowed_origin(config)
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            if not is_preflight():
                response.headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSED_HEADERS)
        return response
