"""`/metrics`: windows, chart and run history; the Recalculate button and its job's progress."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import Response, redirect, request, url_for
from redis.exceptions import RedisError
from werkzeug.wrappers import Response as BaseResponse

from ..core.windows import ceil_window, floor_window, last_closed_boundary
from ..extensions import database, now as clock_now, redis_client, settings
from ..jobs.calculations import JobInfo, enqueue_calculation, get_job
from ..jobs.schedule import next_scheduled_run
from ..services.metrics import last_computed_at, latest_metric_window, recent_runs, window_totals
from . import bp
from .chart import CHART_VARIANTS, bar_chart
from .forms import FilterForm, parse_metric_form
from .rendering import history_headers, render, wants_fragment

log = logging.getLogger(__name__)

TEMPLATE = "metrics/index.html"
JOB_TEMPLATE = "metrics/job.html"
DISPLAY_WINDOWS = 42
RECENT_RUNS = 10
QUEUE_DOWN = "The job queue is unavailable right now, so nothing was queued; try again in a moment."


@dataclass(frozen=True)
class WindowRange:
    """Which windows the page shows: starts in `[first, last)`; `cut` when the filter asked for more."""

    first: datetime
    last: datetime
    size: timedelta
    cut: bool

    @property
    def count(self) -> int:
        return max(0, (self.last - self.first) // self.size)


def window_range(form: FilterForm, size: timedelta, now: datetime) -> WindowRange:
    """At most DISPLAY_WINDOWS windows, ending at `till`, or else at the current window.

    When the newest metrics are older than that span (a quiet system, or
    history loaded after the fact), the range ends at them instead, so the
    page opens on the latest numbers rather than on an empty week.
    """
    if form.end is not None:
        last = ceil_window(form.end, size)
    else:
        last = floor_window(now, size) + size
        latest = latest_metric_window(database(), form.user_id, since=form.start)
        if latest is not None and latest + size <= last - DISPLAY_WINDOWS * size:
            last = latest + size
    first = last - DISPLAY_WINDOWS * size
    cut = True
    if form.start is not None and ceil_window(form.start, size) >= first:
        first, cut = ceil_window(form.start, size), False
    return WindowRange(min(first, last), last, size, cut)


@dataclass(frozen=True)
class NextRun:
    """The scheduler's next run, or why there is none to show."""

    at: datetime | None
    known: bool


def _next_run() -> NextRun:
    try:
        return NextRun(next_scheduled_run(redis_client(), settings()), True)
    except RedisError as exc:
        log.warning("cannot read the schedule: %s", exc.__class__.__name__)
        return NextRun(None, False)


@bp.get("/metrics")
def metrics() -> Response:
    """The whole page, or (for htmx) the results: after a filter change, or when a calculation finishes."""
    form = parse_metric_form(request.args)
    now = clock_now()
    db = database()
    config = settings()
    context: dict[str, Any] = {
        "form": form, "active": "metrics", "now": now, "runs": recent_runs(db, RECENT_RUNS),
        "last_computed": last_computed_at(db), "next_run": _next_run(),
    }
    if form.valid:
        size = config.window_size
        shown = window_range(form, size, now)
        closed = last_closed_boundary(now, size, config.settle)
        totals = window_totals(db, shown.first, shown.last, size, closed, form.user_id)
        context.update(shown=shown, charts=[bar_chart(totals, size, variant) for variant in CHART_VARIANTS],
                       windows=[total for total in reversed(totals) if total.events])
    canonical = url_for("web.metrics", **form.query())
    return render(TEMPLATE, ("results", "errors_oob"), status=200 if form.valid else 400,
                  headers=history_headers(canonical), canonical=canonical, **context)


def _job_response(job: JobInfo | None, *, status: int = 200, message: str | None = None,
                  poll_id: str | None = None) -> Response:
    """The job's status, polling on while it is active (or while Redis is away).

    When the job has ended, the `metrics-updated` event tells the page to
    refresh its table, chart and history.
    """
    headers = {}
    if job is not None and not job.active:
        headers["HX-Trigger"] = "metrics-updated"
    if job is not None and job.active:
        poll_id = job.id
    return render(JOB_TEMPLATE, ("job",), status=status, headers=headers, job=job, message=message,
                  poll_id=poll_id, active="metrics")


@bp.post("/metrics/recalculate")
def recalculate() -> BaseResponse:
    """Queue the calculation of every pending window, or get the job already doing it."""
    try:
        job, _created = enqueue_calculation(redis_client(), settings())
    except RedisError as exc:
        log.warning("cannot queue a calculation: %s", exc.__class__.__name__)
        return _job_response(None, status=503, message=QUEUE_DOWN)
    if not wants_fragment():
        return redirect(url_for("web.metrics_job", job_id=job.id), code=303)
    return _job_response(job)


@bp.get("/metrics/jobs/<job_id>")
def metrics_job(job_id: str) -> Response:
    """One job's progress; htmx polls it until the job ends."""
    try:
        job = get_job(redis_client(), job_id)
    except RedisError as exc:
        log.warning("cannot read job %s: %s", job_id, exc.__class__.__name__)
        return _job_response(None, status=503, poll_id=job_id,
                             message="Lost contact with the job queue; still trying…")
    if job is None:
        return _job_response(None, status=404, message="No such job: it is unknown, or its result has expired.")
    return _job_response(job)
