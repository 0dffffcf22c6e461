"""Who may call what: bearer tokens for the JSON API.

Two kinds of token come from configuration: ingest tokens may only record
events (what a client backend needs), full tokens may do everything. Tokens
are compared as SHA-256 digests in constant time and never logged.
"""
from __future__ import annotations

import hashlib
import hmac
from enum import Enum
from typing import Any

from flask import Flask, g, request

from .errors import ApiError

INGEST_ENDPOINTS = frozenset({"api.create_event", "api.create_events_batch"})
OPEN_ENDPOINTS = frozenset({"api.openapi_document", "api.docs"})


class Access(Enum):
    INGEST = "ingest"
    FULL = "full"


def split_tokens(value: str | None) -> tuple[str, ...]:
    return tuple(token.strip() for token in (value or "").split(",") if token.strip())


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def access_control_enabled(config: dict[str, Any]) -> bool:
    """`on`/`off` as configured; `auto` means on in production or once any credential is set."""
    mode = config["ACCESS_CONTROL"]
    if mode in ("on", "off"):
        return mode == "on"
    credentials = config["API_TOKENS_INGEST"] or config["API_TOKENS_FULL"] or config["ADMIN_PASSWORD_HASH"]
    return bool(credentials) or config["APP_ENV"] == "production"


def check_config(config: dict[str, Any]) -> list[str]:
    """What is missing for access control to work; empty when it is off or complete."""
    if config["ACCESS_CONTROL"] not in ("auto", "on", "off"):
        return [f"ACCESS_CONTROL={config['ACCESS_CONTROL']!r} must be auto, on or off"]
    if not access_control_enabled(config):
        return []
    problems = []
    if not split_tokens(config["API_TOKENS_FULL"]):
        problems.append("API_TOKENS_FULL is not set")
    if not config["ADMIN_PASSWORD_HASH"]:
        problems.append("ADMIN_PASSWORD_HASH is not set (flask --app wsgi hash-password makes one)")
    return problems


def _match(token: str, config: dict[str, Any]) -> Access | None:
    """The kind of a presented token; every configured token is compared, so timing tells nothing."""
    presented = _digest(token)
    found: Access | None = None
    for kind, key in ((Access.FULL, "API_TOKENS_FULL"), (Access.INGEST, "API_TOKENS_INGEST")):
        for candidate in split_tokens(config[key]):
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


def init_app(app: Flask) -> None:
    enabled = access_control_enabled(app.config)

    @app.before_request
    def require_api_token() -> None:
        if not enabled or request.blueprint != "api" or request.endpoint in OPEN_ENDPOINTS:
            return
        token = _bearer_token()
        access = _match(token, app.config) if token else None
        if access is None:
            raise ApiError("send a valid API token as `Authorization: Bearer <token>`", status=401,
                           code="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="api"'})
        if access is Access.INGEST and request.endpoint not in INGEST_ENDPOINTS:
            raise ApiError("this token may only record events", status=403, code="forbidden")
        g.api_access = access
