"""Each route's policy, declared on the route, and the one gate that enforces it on every request.

A view states who may call it, which budgets it spends, whether it checks
CSRF and, for a long-running route, how many of its answers may run at once
per process, in total and per client:

    @bp.get("/events")
    @policy(Access.FULL, budgets=(READ,), csrf=False)
    def get_events() -> Response: ...

The gate runs before every request, in this order: a CORS preflight is
answered (browsers send no credentials with one); then, in open mode, a
state change sent from another site's page is refused (`csrf.cross_site`);
then the CSRF token, the caller's access and the budgets are checked, so
nothing is charged to a budget before the request has proven the rest; then
a slot is taken for a long-running route. A route whose budget is charged per event
charges the rest of its events once it knows how many (`spend_events`). A
refusal is an `ApiError` that the route's blueprint words (the JSON envelope
under `/api/`, a message or the login page on the dashboard). A request that
matched no route has no policy and goes to the 404 and 405 handlers.
`tests/test_policies.py` fails for any route of `app.url_map` whose view
declares none.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

from flask import Flask, Response, after_this_request, current_app, request
from redis.exceptions import RedisError

from ..core.settings import Settings
from ..extensions import runtime
from ..runtime.slots import StreamSlots
from . import cors
from .auth import Token, bears_metrics_token, client_key, verified_token
from .csrf import carries_csrf_token, cross_site
from .errors import ApiError
from .rate_limits import Budget, Refusal, charge, charge_events
from .signins import UNAVAILABLE, signed_in

log = logging.getLogger(__name__)

View = TypeVar("View", bound=Callable[..., Any])


class Access(Enum):
    """Who may call a route once access control is on (with it off, everyone may, but for METRICS_TOKEN)."""

    OPEN = "anyone"
    INGEST = "an ingest or full API token"
    FULL = "a full API token"
    SIGNED_IN = "the dashboard's signed-in admin"
    METRICS_TOKEN = "METRICS_TOKEN, when set; nobody once access control is on without it"


@dataclass(frozen=True)
class Concurrency:
    """How many answers of the routes sharing `pool` one process runs at once: in total (when full, 503) and per
    client (when full, 429), each read from the settings."""

    pool: str
    total: Callable[[Settings], int]
    per_client: Callable[[Settings], int]


# Exports stream for as long as the client reads; bounded so that writes always find a thread.
LONG_READS = Concurrency("long reads", total=lambda config: config.long_read_slots,
                         per_client=lambda config: config.long_reads_per_client)


@dataclass(frozen=True)
class Policy:
    """What a route's callers must prove and may spend, and how its answers may be kept and logged."""

    access: Access
    budgets: tuple[Budget, ...]
    csrf: bool
    concurrency: Concurrency | None = None  # a long-running route's answers in flight; None: no bound
    cacheable: bool = False  # the same for everyone and holding no data: caches may keep it
    logged: bool = True  # probes and scrapes arrive every few seconds and get no request line


def policy(access: Access, *, budgets: tuple[Budget, ...], csrf: bool, concurrency: Concurrency | None = None,
           cacheable: bool = False, logged: bool = True) -> Callable[[View], View]:
    """Declare a view's policy (put it under the route decorator)."""
    declared = Policy(access, budgets, csrf, concurrency, cacheable, logged)

    def declare(view: View) -> View:
        view.policy = declared  # type: ignore[attr-defined]
        return view

    return declare


def policy_of(endpoint: str | None) -> Policy | None:
    """The policy of the view serving `endpoint`, if any."""
    view = current_app.view_functions.get(endpoint) if endpoint else None
    return getattr(view, "policy", None)


# Refusal codes a blueprint words in its own way.
CSRF_REFUSED = "csrf_refused"
CROSS_SITE = "cross_site"
SIGN_IN_REQUIRED = "sign_in_required"
SIGN_IN_UNCHECKED = "sign_in_unchecked"
RATE_LIMITED = "rate_limited"
BUDGET_UNCHECKED = "budget_unchecked"
BATCH_OVER_BUDGET = "batch_over_budget"  # more events than the whole budget: waiting cannot help, smaller batches do
BUSY = "busy"


def _check_access(access: Access, settings: Settings) -> None:
    if access is Access.METRICS_TOKEN:
        _check_scrape(settings)
        return
    if access is Access.OPEN or not settings.access_control_enabled:
        return
    if access is Access.SIGNED_IN:
        try:
            allowed = signed_in()
        except RedisError as exc:
            log.warning("cannot check a sign-in: %s", exc.__class__.__name__)
            raise ApiError(UNAVAILABLE, status=503, code=SIGN_IN_UNCHECKED) from exc
        if not allowed:
            raise ApiError("sign in first", status=401, code=SIGN_IN_REQUIRED)
        return
    token = verified_token(settings)
    if token is None:
        raise ApiError("send a valid API token as `Authorization: Bearer <token>`", status=401,
                       code="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="api"'})
    if access is Access.FULL and token is not Token.FULL:
        raise ApiError("this token may only record events", status=403, code="forbidden")


def _check_scrape(settings: Settings) -> None:
    """With METRICS_TOKEN set only a request bearing it may scrape; without one, anyone while access control is
    off and nobody once it is on (the exposition tells an outsider a good deal)."""
    if not settings.metrics_token:
        if settings.access_control_enabled:
            log.warning("refused a scrape of /internal/metrics: access control is on and METRICS_TOKEN is not set")
            raise ApiError("not found", status=404, code="not_found")
        return
    if not bears_metrics_token(settings):
        raise ApiError("send METRICS_TOKEN as `Authorization: Bearer <token>`", status=401, code="unauthorized",
                       headers={"WWW-Authenticate": 'Bearer realm="metrics"'})


def _hold_slot(slots: StreamSlots, concurrency: Concurrency, settings: Settings) -> None:
    """Take one of the pool's slots, for this client, for as long as the answer streams."""
    client = client_key(settings)
    total = concurrency.total(settings)
    full = slots.take(concurrency.pool, client, total, concurrency.per_client(settings))
    if full == "client":
        raise ApiError(f"you already have {concurrency.per_client(settings)} of these running here; wait for it to "
                       "finish", status=429, code=RATE_LIMITED, retry_after=5)
    if full == "total":
        raise ApiError(f"{total} of these are already running; retry later", status=503, code=BUSY, retry_after=5)

    @after_this_request
    def give_back_when_sent(response: Response) -> Response:
        if response.is_streamed:
            response.call_on_close(lambda: slots.give_back(concurrency.pool, client))
        else:  # refused before streaming (a bad filter, say): free at once
            slots.give_back(concurrency.pool, client)
        return response


def _refused(refusal: Refusal) -> ApiError:
    if refusal.too_large:  # no wait would let it through: not a 429, nothing to retry
        return ApiError(refusal.message, status=refusal.status, code=BATCH_OVER_BUDGET)
    code = BUDGET_UNCHECKED if refusal.unchecked else RATE_LIMITED
    return ApiError(refusal.message, status=refusal.status, code=code, retry_after=refusal.retry_after)


def enforce_policy() -> Response | None:
    """The gate (see the module docstring); returns the answer to a preflight, raises a refusal."""
    declared = request.policy = policy_of(request.endpoint)  # type: ignore[attr-defined]
    preflight = cors.answer_preflight()
    if preflight is not None:
        return preflight
    if declared is None:
        return None
    process = runtime()
    settings = process.settings
    if not settings.access_control_enabled and cross_site(settings):
        raise ApiError("a page of another site may not change anything here", status=403, code=CROSS_SITE)
    if declared.csrf and not carries_csrf_token():
        raise ApiError("This form was stale or was not sent from this dashboard; reload the page and try again.",
                       status=400, code=CSRF_REFUSED)
    _check_access(declared.access, settings)
    refusal = charge(declared.budgets, settings, process)
    if refusal is not None:
        raise _refused(refusal)
    if declared.concurrency is not None:
        _hold_slot(process.stream_slots, declared.concurrency, settings)
    return None


def spend_events(events: int) -> None:
    """Charge a request of `events` events to its route's per-event budgets (the gate charged the first one);
    raises the refusal, before anything is stored, when they have no room."""
    process = runtime()
    refusal = charge_events(request.policy.budgets, events, process.settings, process)  # type: ignore[attr-defined]
    if refusal is not None:
        raise _refused(refusal)


def init_app(app: Flask) -> None:
    app.before_request(enforce_policy)
