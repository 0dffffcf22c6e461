"""Who may call what: bearer tokens for the JSON API.

Two kinds of token come from configuration: ingest tokens may only record
events (what a client backend needs), full tokens may do everything. Tokens
are compared as SHA-256 digests in constant time and never logged.
"""
from __future__ import annotations

import hashlib
import hmac
from enum import Enum

from flask import Flask, request

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


def api_client_key() -> str:
    """Who is calling, for rate limits: a digest of the token when there is one, else the address."""
    token = _bearer_token()
    if token:
        return "token:" + hashlib.sha256(token.encode()).hexdigest()[:16]
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
        token = _bearer_token()
        access = _match(token, settings) if token else None
        if access is None:
            raise ApiError("send a valid API token as `Authorization: Bearer <token>`", status=401,
                           code="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="api"'})
        if access is Access.INGEST and request.endpoint not in INGEST_ENDPOINTS:
            raise ApiError("this token may only record events", status=403, code="forbidden")
