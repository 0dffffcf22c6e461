"""Who may call what: bearer tokens for the JSON API.

Two kinds of token come from configuration: ingest tokens may only record
events (what a client backend needs), full tokens may do everything. Tokens
are compared as SHA-256 digests in constant time and never logged.
"""
from __future__ import annotations

import hashlib
import hmac
from enum import Enum

from flask import Flask, g, request

from ..core.settings import Settings
from .errors import ApiError

INGEST_ENDPOINTS = frozenset({"api.create_event", "api.create_events_batch"})
OPEN_ENDPOINTS = frozenset({"api.openapi_document", "api.docs"})


class Access(Enum):
    INGEST = "ingest"
    FULL = "full"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _match(token: str, settings: Settings) -> Access | None:
    """The kind of a presented token; every configured token is compared, so timing tells nothing."""
    presented = _digest(token)
    found: Access | None = None
    for kind, tokens in ((Access.FULL, settings.full_tokens), (Access.INGEST, settings.ingest_tokens)):
        for candidate in tokens:
            if hmac.compare_digest(presented, _digest(candidate)) and found is None:
                found = kind
    return found


def verified_access(settings: Settings) -> Access | None:
    """The kind of the request's bearer token once it matched a configured one; worked out once a request."""
    if "api_access" not in g:
        token = _bearer_token()
        g.api_access = _match(token, settings) if token else None
    return g.api_access


def client_key(settings: Settings) -> str:
    """Who is calling, for rate limits: a token only once it matched a configured one, else the address.

    An unverified token is a claim anyone can vary at will: keyed on it, every
    random `Bearer` value would bring a fresh budget of its own.
    """
    if verified_access(settings) is not None:
        return "token:" + hashlib.sha256((_bearer_token() or "").encode()).hexdigest()[:16]
    return address_key()


def address_key() -> str:
    """The client's address: the connection's, or the trusted proxies' X-Forwarded-For (see `proxies`)."""
    return "ip:" + (request.remote_addr or "unknown")


def _bearer_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def init_app(app: Flask, settings: Settings) -> None:
    enabled = settings.access_control_enabled

    @app.before_request
    def require_api_token() -> None:
        if not enabled or request.blueprint != "api" or request.endpoint in OPEN_ENDPOINTS:
            return
        access = verified_access(settings)
        if access is None:
            raise ApiError("send a valid API token as `Authorization: Bearer <token>`", status=401,
                           code="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="api"'})
        if access is Access.INGEST and request.endpoint not in INGEST_ENDPOINTS:
            raise ApiError("this token may only record events", status=403, code="forbidden")
