"""Rate limits: the request budgets a route may declare it spends, and charging a request to them.

Who is charged is proven, never merely claimed: a bearer token only once it
matched a configured one, else the client's address (the connection's, or
what the trusted proxies forwarded: `proxies`); sign-in attempts are charged
to the address here, and delayed per user name by `signin_attempts`. A
request is charged only once it has passed its route's other checks (CSRF,
then access: `policy`), so a cross-site form post without the session's
token can never spend the admin's sign-in budget, while a failed password,
which has passed those checks, counts. The ingestion budget counts events:
a batch pays for each of its events (`charge_events`).

Budgets are fixed windows shared by every web process through Redis. The
busy ones, ingestion and reads, are counted in the process and shared in the
background (`app.runtime.budget_counts`): no round trip per request, a small
documented overshoot across processes, and while Redis is away each process
still holds the limit. Sign-in and Recalculate budgets are small and guard
against abuse, so they are exact: one round trip per budget. If Redis is
unreachable they refuse (503) rather than step aside: a control that failed
open would let the guesses through, and those routes need Redis for their
work anyway. A check waits RATE_LIMIT_REDIS_TIMEOUT_SECONDS at most, and while
the budget breaker is open (after failures) it does not ask Redis at all.
"""
from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from flask import request
from limits import RateLimitItem, parse

from ..core.settings import Settings
from ..runtime import Runtime
from ..runtime.breaker import CircuitOpenError
from .auth import address_key, client_key

log = logging.getLogger(__name__)

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
READS = frozenset({"GET", "HEAD"})


def _address_key(_settings: Settings) -> str:
    return address_key()


@dataclass(frozen=True)
class Budget:
    """One budget: the setting holding its limit, the methods it charges, who pays for each request, and
    whether it is counted in the process (busy budgets) or in Redis on every request (exact ones).
    Routes that declare the same budget share one count (the API's and the dashboard's Recalculate, say)."""

    setting: str
    methods: frozenset[str]
    payer: Callable[[Settings], str]
    local: bool = False
    per_event: bool = False  # the gate charges a request's first event, the route the rest (`charge_events`)


INGEST = Budget("rate_limit_ingest", WRITES, client_key, local=True, per_event=True)
READ = Budget("rate_limit_read", READS, client_key, local=True)
RECALCULATE = Budget("rate_limit_recalculate", WRITES, client_key)
SIGN_IN_ADDRESS = Budget("rate_limit_login", WRITES, _address_key)


@dataclass(frozen=True)
class Refusal:
    """A request a budget refuses: over its limit (429), or unchecked while Redis is away (503); and how many
    seconds until it may be tried again."""

    limit: RateLimitItem
    retry_after: int
    unchecked: bool = False
    too_large: int = 0  # events in a request larger than the whole budget, which no wait would let through

    @property
    def status(self) -> int:
        return 503 if self.unchecked else 413 if self.too_large else 429

    @property
    def message(self) -> str:
        if self.unchecked:
            return "Redis is unavailable right now, so nothing was queued or checked; try again in a moment"
        if self.too_large:
            return f"{self.too_large} events are more than the rate limit of {self.limit}; send smaller batches"
        return f"rate limit of {self.limit} exceeded; retry later"


@functools.cache
def _limit(text: str) -> RateLimitItem:
    return parse(text)


def charge(budgets: Iterable[Budget], settings: Settings, runtime: Runtime, cost: int = 1) -> Refusal | None:
    """Charge the current request (`cost` units) to each budget in turn; the first without room refuses it.

    Budgets after a refusing one are not charged. A budget whose setting is
    empty is no limit.
    """
    for budget in budgets:
        text = getattr(settings, budget.setting)
        if not text or request.method not in budget.methods:
            continue
        limit = _limit(text)
        payer = budget.payer(settings)
        if budget.local:
            retry_after = runtime.budget_counts.hit(budget.setting, payer, limit.amount, limit.get_expiry(), cost)
            refusal = None if retry_after is None else Refusal(limit, retry_after)
        else:
            refusal = _charge_in_redis(runtime, limit, budget.setting, payer, cost)
        if refusal is not None:
            return refusal
    return None


def charge_events(budgets: Iterable[Budget], events: int, settings: Settings, runtime: Runtime) -> Refusal | None:
    """Charge a request of `events` events to its per-event budgets, whose first event the gate charged."""
    per_event = [budget for budget in budgets if budget.per_event and getattr(settings, budget.setting)]
    for budget in per_event:
        limit = _limit(getattr(settings, budget.setting))
        if events > limit.amount:  # no wait would let it through
            return Refusal(limit, 0, too_large=events)
    return charge(per_event, settings, runtime, cost=events - 1) if per_event and events > 1 else None


def _charge_in_redis(runtime: Runtime, limit: RateLimitItem, scope: str, payer: str,
                     cost: int) -> Refusal | None:
    """The Redis round trip: count `cost` units; a refusal when over budget or when Redis cannot answer."""
    limiter = runtime.exact_limiter
    try:
        with runtime.budget_breaker.guard():
            if limiter.hit(limit, scope, payer, cost=cost):
                return None
            reset_at = limiter.get_window_stats(limit, scope, payer).reset_time
    except CircuitOpenError:  # Redis failed moments ago: refuse without waiting for it
        return Refusal(limit, 1, unchecked=True)
    except Exception as exc:  # any storage failure: refuse, never let the request through unchecked
        log.warning("rate limits unavailable, request refused: %s", exc.__class__.__name__)
        return Refusal(limit, 1, unchecked=True)
    return Refusal(limit, max(1, math.ceil(reset_at - time.time())))
