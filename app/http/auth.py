"""Who is calling: bearer tokens for the JSON API, the scrape token for Prometheus, and the client's key.

Two kinds of API token come from configuration: ingest tokens may only record
events (what a client backend needs), full tokens may do everything. Tokens
are compared as SHA-256 digests in constant time and never logged. Which
kind a route needs is its policy's (`policy`).
"""
from __future__ import annotations

import hashlib
import hmac
from enum import Enum

from flask import g, request

from ..core.settings import Settings


class Token(Enum):
    INGEST = "ingest"
    FULL = "full"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _match(token: str, settings: Settings) -> Token | None:
    """The kind of a presented token; every configured token is compared, so timing tells nothing."""
    presented = _digest(token)
    found: Token | None = None
    for kind, tokens in ((Token.FULL, settings.full_tokens), (Token.INGEST, settings.ingest_tokens)):
        for candidate in tokens:
            if hmac.compare_digest(presented, _digest(candidate)) and found is None:
                found = kind
    return found


def verified_token(settings: Settings) -> Token | None:
    """The kind of the request's bearer token once it matched a configured one; worked out once a request."""
    if "api_token" not in g:
        token = bearer_token()
        g.api_token = _match(token, settings) if token else None
    return g.api_token  # type: ignore[no-any-return]


def bears_metrics_token(settings: Settings) -> bool:
    """Whether the request bears METRICS_TOKEN (which must be set), compared in constant time."""
    presented = _digest(bearer_token() or "")
    return bool(settings.metrics_token) and hmac.compare_digest(presented, _digest(settings.metrics_token))


def client_key(settings: Settings) -> str:
    """Who is calling, for rate limits: a token only once it matched a configured one, else the address.

    An unverified token is a claim anyone can vary at will: keyed on it, every
    random `Bearer` value would bring a fresh budget of its own.
    """
    if verified_token(settings) is not None:
        return "token:" + hashlib.sha256((bearer_token() or "").encode()).hexdigest()[:16]
    return address_key()


def address_key() -> str:
    """The client's address: the connection's, or the trusted proxies' X-Forwarded-For (see `proxies`)."""
    return "ip:" + (request.remote_addr or "unknown")


def bearer_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None
