"""Rate limits: per-client request budgets for ingestion, recalculation and sign-in, kept in Redis.

A client is its API token (or its address when the API is open). Budgets are
fixed windows counted in Redis (one round trip a request), so every web
process shares them. If Redis is unreachable the limits step aside rather
than refuse traffic: ingestion must keep working while Redis is down.
"""
from __future__ import annotations

import logging
import math
import time

from flask import Flask, request
from limits import parse
from limits.storage import RedisStorage
from limits.strategies import FixedWindowRateLimiter

from ..core.settings import Settings
from ..extensions import RATE_LIMITS_KEY
from . import SAFE_METHODS
from .auth import api_client_key
from .errors import ApiError

log = logging.getLogger(__name__)

# Which setting budgets which endpoints; endpoints sharing a setting share one budget.
BUDGETS = {
    "rate_limit_ingest": ("api.create_event", "api.create_events_batch"),
    "rate_limit_recalculate": ("api.trigger_metrics", "web.recalculate"),
    "rate_limit_login": ("web.login",),
}


class RateLimits:
    """The budgets of one app, checked before its requests."""

    def __init__(self, settings: Settings) -> None:
        self.items = {
            endpoint: (setting, parse(getattr(settings, setting)))
            for setting, endpoints in BUDGETS.items() if getattr(settings, setting)
            for endpoint in endpoints
        }
        timeout = settings.rate_limit_redis_timeout_seconds
        storage = RedisStorage(settings.redis_url, key_prefix=f"{settings.redis_namespace}:ratelimit",
                               socket_connect_timeout=timeout, socket_timeout=timeout)
        self.limiter = FixedWindowRateLimiter(storage)

    def check(self) -> None:
        budget = self.items.get(request.endpoint or "")
        if budget is None or request.method in SAFE_METHODS:
            return
        scope, item = budget
        client = api_client_key()
        try:
            allowed = self.limiter.hit(item, scope, client)
            reset_at = None if allowed else self.limiter.get_window_stats(item, scope, client).reset_time
        except Exception as exc:  # any storage failure: let the request through
            log.warning("rate limits unavailable, not enforced: %s", exc.__class__.__name__)
            return
        if reset_at is not None:
            retry_after = max(1, math.ceil(reset_at - time.time()))
            raise ApiError(f"rate limit of {item} exceeded; retry later", status=429, code="rate_limited",
                           retry_after=retry_after)

    def close(self) -> None:
        """Close the budget store's Redis connections (tests and tools build many apps in one process)."""
        self.limiter.storage.storage.close()  # type: ignore[attr-defined]


def init_app(app: Flask, settings: Settings) -> None:
    limits = app.extensions[RATE_LIMITS_KEY] = RateLimits(settings)
    app.before_request(limits.check)
