"""Rate limits: the request budgets a route may declare it spends, and charging a request to them.

Who is charged is proven, never merely claimed: a bearer token only once it
matched a configured one, else the client's address (the connection's, or
what the trusted proxies forwarded: `proxies`); sign-in attempts are charged
to the address and, separately, to the submitted user name, and both budgets
must have room. A request is charged only once it has passed its route's
other checks (CSRF, then access: `policy`), so a cross-site form post without
the session's token can never spend the admin's sign-in budget, while a
failed password, which has passed those checks, counts.

Budgets are fixed windows shared by every web process through Redis. The
busy ones, ingestion and reads, are counted in the process and shared in the
background (`app.runtime.budget_counts`): no round trip per request, a small
documented overshoot across processes, and while Redis is away each process
still holds the limit. Sign-in and Recalculate budgets are small and guard
against abuse, so they are exact: one round trip per budget. If Redis is
unreachable those step aside rather than refuse traffic; a check waits
RATE_LIMIT_REDIS_TIMEOUT_SECONDS at most, and while the budget breaker is
open (after failures) it does not ask Redis at all.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
import unicodedata
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


def login_username_key(_settings: Settings) -> str:
    """The submitted user name, normalised (case, width, surrounding space) and hashed into a short key."""
    name = unicodedata.normalize("NFKC", request.form.get("username", "")).strip().casefold()
    return "user:" + hashlib.sha256(name.encode()).hexdigest()[:32]


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


INGEST = Budget("rate_limit_ingest", WRITES, client_key, local=True)
READ = Budget("rate_limit_read", READS, client_key, local=True)
RECALCULATE = Budget("rate_limit_recalculate", WRITES, client_key)
SIGN_IN_ADDRESS = Budget("rate_limit_login", WRITES, _address_key)
SIGN_IN_USERNAME = Budget("rate_limit_login_username", WRITES, login_username_key)


@dataclass(frozen=True)
class Refusal:
    """A request over budget: which limit, and how many seconds until it has room again."""

    limit: RateLimitItem
    retry_after: int

    @property
    def message(self) -> str:
        return f"rate limit of {self.limit} exceeded; retry later"


@functools.cache
def _limit(text: str) -> RateLimitItem:
    return parse(text)


def charge(budgets: Iterable[Budget], settings: Settings, runtime: Runtime) -> Refusal | None:
    """Charge the current request to each budget in turn; the first without room refuses it.

    Budgets after a refusing one are not charged, so attempts an address may
    no longer make do not spend the user name's budget as well. A budget whose
    setting is empty is no limit.
    """
    for budget in budgets:
        text = getattr(settings, budget.setting)
        if not text or request.method not in budget.methods:
            continue
        limit = _limit(text)
        payer = budget.payer(settings)
        if budget.local:
            retry_after = runtime.budget_counts.hit(budget.setting, payer, limit.amount, limit.get_expiry())
        else:
            retry_after = _charge_in_redis(runtime, limit, budget.setting, payer)
        if retry_after is not None:
            return Refusal(limit, retry_after)
    return None


def _charge_in_redis(runtime: Runtime, limit: RateLimitItem, scope: str, payer: str) -> int | None:
    """The Redis round trip: count one request; seconds to wait when over budget, else None.

    Any storage failure lets the request through (None): the limits step aside while Redis is away.
    """
    limiter = runtime.exact_limiter
    try:
        with runtime.budget_breaker.guard():
            if limiter.hit(limit, scope, payer):
                return None
            reset_at = limiter.get_window_stats(limit, scope, payer).reset_time
    except CircuitOpenError:  # Redis failed moments ago: step aside without waiting for it
        return None
    except Exception as exc:  # any storage failure: let the request through
        log.warning("rate limits unavailable, not enforced: %s", exc.__class__.__name__)
        return None
    return max(1, math.ceil(reset_at - time.time()))
