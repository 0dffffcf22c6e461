"""Abuse limits: per-client request budgets for ingestion and recalculation, kept in Redis.

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

from .auth import api_client_key
from .errors import ApiError

log = logging.getLogger(__name__)

# Which setting budgets which endpoints; endpoints sharing a setting share one budget.
BUDGETS = {
    "RATE_LIMIT_INGEST": ("api.create_event", "api.create_events_batch"),
    "RATE_LIMIT_RECALCULATE": ("api.trigger_metrics", "web.recalculate"),
    "RATE_LIMIT_LOGIN": ("web.login",),
}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class RateLimits:
    """The budgets of one app, checked before its requests."""

    def __init__(self, app: Flask) -> None:
        self.items = {
            endpoint: (setting.lower(), parse(app.config[setting]))
            for setting, endpoints in BUDGETS.items() if app.config[setting]
            for endpoint in endpoints
        }
        storage = RedisStorage(app.config["REDIS_URL"], key_prefix=f"{app.config['REDIS_NAMESPACE']}:ratelimit",
                               socket_connect_timeout=0.5, socket_timeout=0.5)
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


def init_app(app: Flask) -> None:
    limits = RateLimits(app)
    app.before_request(limits.check)
