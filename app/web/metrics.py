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
from ..extensions import database, guarded_redis, now as clock_now, settings
from ..http.policy import Access, policy
from ..http.rate_limits import READ, RECALCULATE
from ..jobs.calculations import JobInfo, enqueue_calculation, get_job
from ..jobs.schedule import next_scheduled_run
from ..services.metrics import (RunRecord, last_finished_run, latest_metric_window, open_windows, recent_runs,
                                window_totals)
from . import bp
from .chart import CHART_VARIANTS, bar_chart, window_text
from .events import LIVE_INTERVAL_SECONDS
from .forms import FilterForm, parse_metric_form
from .rendering import history_headers, message_response, render, wants_fragment

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


def window_range(form: FilterForm, size: timedelta, now: datetime, live_events: bool = False) -> WindowRange:
    """At most DISPLAY_WINDOWS windows, ending at `till`, or else at the current window.

    When the newest metrics are older than that span (a quiet system, or
    history loaded after the fact) and no event has arrived in the open
    window either, the range ends at them instead, so the page opens on the
    latest numbers rather than on an empty week.
    """
    if form.end is not None:
        last = ceil_window(form.end, size)
    else:
        last = floor_window(now, size) + size
        latest = None if live_events else latest_metric_window(database(), form.user_id, since=form.start)
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
        with guarded_redis() as redis:
            return NextRun(next_scheduled_run(redis, settings()), True)
    except RedisError as exc:
        log.warning("cannot read the schedule: %s", exc.__class__.__name__)
        return NextRun(None, False)


def _windows_context(form: FilterForm, now: datetime, last_run: RunRecord | None) -> dict[str, Any]:
    """The chart, the window in progress and the table of counted windows, for a valid filter.

    The open windows are counted live from the events and drawn with their
    current numbers; every other window shows what runs have stored.
    """
    db = database()
    config = settings()
    size = config.window_size
    live = open_windows(db, now, size, config.settle, form.user_id, form.start, form.end)
    shown = window_range(form, size, now, live_events=any(window.events for window in live))
    closed = last_closed_boundary(now, size, config.settle)
    by_start = {window.window_start: window for window in live}
    totals = [by_start.get(total.window_start, total)
              for total in window_totals(db, shown.first, shown.last, size, closed, form.user_id)]
    return {
        "shown": shown, "open_windows": live,
        "charts": [bar_chart(totals, size, variant) for variant in CHART_VARIANTS],
        "windows": [total for total in reversed(totals) if total.events and total.state != "open"],
        "pending_windows": sum(1 for total in totals if total.state == "pending" and not total.events),
        "live_url": url_for("web.metrics_live", run=last_run.id if last_run else 0, **form.query()) if live else None,
        "live_interval": LIVE_INTERVAL_SECONDS,
    }


@bp.get("/metrics")
@policy(Access.SIGNED_IN, budgets=(READ,), csrf=True)
def metrics() -> Response:
    """The whole page, or (for htmx) the results: after a filter change, or when a calculation finishes."""
    form = parse_metric_form(request.args)
    now = clock_now()
    db = database()
    last_run = last_finished_run(db)
    context: dict[str, Any] = {
        "form": form, "active": "metrics", "now": now, "runs": recent_runs(db, RECENT_RUNS),
        "last_run": last_run, "next_run": _next_run(), "window_hours": settings().metrics_window_hours,
    }
    if form.valid:
        context.update(_windows_context(form, now, last_run))
    canonical = url_for("web.metrics", **form.query())
    return render(TEMPLATE, ("results", "errors_oob"), status=200 if form.valid else 400,
                  headers=history_headers(canonical), canonical=canonical, **context)


@bp.get("/metrics/live")
@policy(Access.SIGNED_IN, budgets=(), csrf=True)
def metrics_live() -> BaseResponse:
    """The chart and the window in progress, counted anew, for the page's live polling (htmx only).

    `run` is the last finished run the page shows; when a newer one has
    finished since (the schedule, or a run started elsewhere), the
    `metrics-updated` event makes the page refresh all its results.
    """
    if not wants_fragment():
        return redirect(url_for("web.metrics", **parse_metric_form(request.args).query()))
    form = parse_metric_form(request.args)
    if not form.valid:
        return message_response("This view has expired; reload the page.", 400)
    now = clock_now()
    last_run = last_finished_run(database())
    headers = {}
    if request.args.get("run", "") != str(last_run.id if last_run else 0):
        headers["HX-Trigger"] = "metrics-updated"
    return render(TEMPLATE, ("live",), headers=headers, form=form, active="metrics", now=now,
                  **_windows_context(form, now, last_run))


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
    counting = None
    if job is not None and job.active and job.progress is not None and job.progress.window is not None:
        counting = window_text(job.progress.window, job.progress.window + settings().window_size)
    return render(JOB_TEMPLATE, ("job",), status=status, headers=headers, job=job, message=message,
                  poll_id=poll_id, counting=counting, active="metrics")


@bp.post("/metrics/recalculate")
@policy(Access.SIGNED_IN, budgets=(RECALCULATE,), csrf=True)
def recalculate() -> BaseResponse:
    """Queue the calculation of every pending window, or get the job already doing it."""
    try:
        with guarded_redis() as redis:
            job, _created = enqueue_calculation(redis, settings())
    except RedisError as exc:
        log.warning("cannot queue a calculation: %s", exc.__class__.__name__)
        return _job_response(None, status=503, message=QUEUE_DOWN)
    if not wants_fragment():
        return redirect(url_for("web.metrics_job", job_id=job.id), code=303)
    return _job_response(job)


@bp.get("/metrics/jobs/<job_id>")
@policy(Access.SIGNED_IN, budgets=(), csrf=True)
def metrics_job(job_id: str) -> Response:
    """One job's progress; htmx polls it until the job ends."""
    try:
        with guarded_redis() as redis:
            job = get_job(redis, settings().redis_namespace, job_id)
    except RedisError as exc:
        log.warning("cannot read job %s: %s", job_id, exc.__class__.__name__)
        return _job_response(None, status=503, poll_id=job_id,
                             message="Lost contact with the job queue; still trying…")
    if job is None:
        return _job_response(None, status=404, message="No such job: it is unknown, or its result has expired.")
    return _job_response(job)
