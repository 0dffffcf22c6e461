"""Rate limits: every request budget of the service, defined here (`BUDGETS`) and counted in Redis.

Who is charged is proven, never merely claimed: a bearer token only once it
matched a configured one, else the client's address (the connection's, or
what the trusted proxies forwarded: `proxies`); sign-in attempts are charged
to the address and, separately, to the submitted user name, and both budgets
must have room.

A request is charged only once it has passed its checks: API requests after
the token check (`auth` registers its hook first), dashboard requests after the
CSRF check and the sign-in, from the web blueprint (`charge_dashboard_request`),
so a cross-site form post without the session's token can never spend the
admin's sign-in budget. A failed password has passed those checks, so it counts.

Budgets are fixed windows shared by every web process through Redis. The
busy ones, ingestion and reads, are counted in the process and shared in the
background (`local_counts`): no round trip per request, a small documented
overshoot across processes, and while Redis is away each process still holds
the limit. Sign-in and Recalculate budgets are small and guard against abuse,
so they are exact: one round trip per budget. If Redis is unreachable those
step aside rather than refuse traffic; a check waits
RATE_LIMIT_REDIS_TIMEOUT_SECONDS at most, and while the limiter's circuit
breaker is open (after failures) it does not ask Redis at all.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, current_app, request
from limits import RateLimitItem, parse
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from limits.storage import RedisStorage
from limits.strategies import FixedWindowRateLimiter

from ..core.breaker import CircuitBreaker, CircuitOpenError
from ..core.settings import Settings
from ..extensions import RATE_LIMITS_KEY
from .auth import address_key, client_key
from .errors import ApiError
from .local_counts import LocalCounts

log = logging.getLogger(__name__)

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
READS = frozenset({"GET", "HEAD"})
# The blueprint that charges its own requests, after its CSRF check and sign-in.
SELF_CHARGING_BLUEPRINTS = frozenset({"web"})


def login_username_key(_settings: Settings) -> str:
    """The submitted user name, normalised (case, width, surrounding space) and hashed into a short key."""
    name = unicodedata.normalize("NFKC", request.form.get("username", "")).strip().casefold()
    return "user:" + hashlib.sha256(name.encode()).hexdigest()[:32]


def _address_key(_settings: Settings) -> str:
    return address_key()


@dataclass(frozen=True)
class Budget:
    """One budget: the setting holding its limit, the requests it charges, who pays for each, and whether
    it is counted in the process (busy budgets) or in Redis on every request (exact ones)."""

    setting: str
    endpoints: frozenset[str]
    methods: frozenset[str]
    payer: Callable[[Settings], str]
    local: bool = False


# Budgets sharing a setting share one count (the API's and the dashboard's Recalculate, say).
BUDGETS = (
    Budget("rate_limit_ingest", frozenset({"api.create_event", "api.create_events_batch"}), WRITES, client_key,
           local=True),
    Budget("rate_limit_recalculate", frozenset({"api.trigger_metrics", "web.recalculate"}), WRITES, client_key),
    Budget("rate_limit_read", frozenset({"api.get_events", "api.export_events", "api.get_metrics", "web.events",
                                         "web.more_events", "web.live_events", "web.export_events",
                                         "web.metrics"}), READS, client_key, local=True),
    Budget("rate_limit_login", frozenset({"web.login"}), WRITES, _address_key),
    Budget("rate_limit_login_username", frozenset({"web.login"}), WRITES, login_username_key),
)


@dataclass(frozen=True)
class Refusal:
    """A request over budget: which limit, and how many seconds until it has room again."""

    limit: RateLimitItem
    retry_after: int

    @property
    def message(self) -> str:
        return f"rate limit of {self.limit} exceeded; retry later"


class RateLimits:
    """The budgets of one app, with their limits parsed once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.by_endpoint: dict[str, list[tuple[Budget, RateLimitItem]]] = {}
        for budget in BUDGETS:
            limit = getattr(settings, budget.setting)
            if limit:
                for endpoint in budget.endpoints:
                    self.by_endpoint.setdefault(endpoint, []).append((budget, parse(limit)))
        timeout = settings.rate_limit_redis_timeout_seconds
        storage = RedisStorage(settings.redis_url, key_prefix=f"{settings.redis_namespace}:ratelimit",
                               socket_connect_timeout=timeout, socket_timeout=timeout)
        self.limiter = FixedWindowRateLimiter(storage)
        self.breaker = CircuitBreaker("rate limits' Redis", reset_seconds=settings.redis_breaker_seconds)
        # No retries: a failed sharing is simply tried again later, and a retry would only wait longer.
        self.counts = LocalCounts(Redis.from_url(settings.redis_url, socket_connect_timeout=timeout,
                                                 socket_timeout=timeout, retry=Retry(NoBackoff(), 0)),
                                  prefix=f"{settings.redis_namespace}:ratelimit:local",
                                  interval=settings.rate_limit_sync_ms / 1000,
                                  pause_after_failure=settings.redis_breaker_seconds)

    def charge(self) -> Refusal | None:
        """Charge the current request to each of its budgets in turn; the first without room refuses it.

        Budgets after a refusing one are not charged, so attempts an address
        may no longer make do not spend the user name's budget as well.
        """
        for budget, limit in self.by_endpoint.get(request.endpoint or "", ()):
            if request.method not in budget.methods:
                continue
            payer = budget.payer(self.settings)
            if budget.local:
                retry_after = self.counts.hit(budget.setting, payer, limit.amount, limit.get_expiry())
            else:
                retry_after = self.charge_in_redis(limit, budget.setting, payer)
            if retry_after is not None:
                return Refusal(limit, retry_after)
        return None

    def charge_in_redis(self, limit: RateLimitItem, scope: str, payer: str) -> int | None:
        """The Redis round trip: count one request; seconds to wait when over budget, else None.

        Any storage failure lets the request through (None): the limits step aside while Redis is away.
        """
        try:
            with self.breaker.guard():
                if self.limiter.hit(limit, scope, payer):
                    return None
                reset_at = self.limiter.get_window_stats(limit, scope, payer).reset_time
        except CircuitOpenError:  # Redis failed moments ago: step aside without waiting for it
            return None
        except Exception as exc:  # any storage failure: let the request through
            log.warning("rate limits unavailable, not enforced: %s", exc.__class__.__name__)
            return None
        return max(1, math.ceil(reset_at - time.time()))

    def check_request(self) -> None:
        """The app-wide hook: charge every request except those whose blueprint charges them itself."""
        if request.blueprint in SELF_CHARGING_BLUEPRINTS:
            return
        refusal = self.charge()
        if refusal is not None:
            raise ApiError(refusal.message, status=429, code="rate_limited", retry_after=refusal.retry_after)

    def close(self) -> None:
        """Share the last counts and close the Redis connections (tests and tools build many apps in one process)."""
        self.counts.close()
        self.counts.redis.close()
        self.limiter.storage.storage.close()  # type: ignore[attr-defined]


def charge_dashboard_request() -> Refusal | None:
    """Charge a dashboard request once the web blueprint has checked its CSRF token and sign-in."""
    limits: RateLimits = current_app.extensions[RATE_LIMITS_KEY]
    return limits.charge()


def init_app(app: Flask, settings: Settings) -> None:
    limits = app.extensions[RATE_LIMITS_KEY] = RateLimits(settings)
    app.before_request(limits.check_request)
