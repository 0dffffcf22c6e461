"""`/api/metrics`: list metrics, trigger a calculation, follow its job."""
from __future__ import annotations

from flask import Response, jsonify

from ..core.errors import NotFoundError
from ..core.list_parameters import MetricListParameters
from ..core.validation import parse_calculation_request
from ..extensions import database, guarded_redis, now as clock_now, settings
from ..http.policy import Access, policy
from ..http.rate_limits import READ, RECALCULATE
from ..jobs.calculations import enqueue_calculation, get_job
from ..services.metrics import MetricCursor, MetricFilter, list_metrics, open_windows
from . import bp
from .inputs import json_body, list_query
from .representations import MetricPage, job_view, metric_view, open_window_view


@bp.post("/metrics")
@policy(Access.FULL, budgets=(RECALCULATE,), csrf=False)
def trigger_metrics() -> tuple[Response, int]:
    """Queue a calculation (202); a pending one for the same range is returned instead of a new one.

    An optional body `{"from": ..., "till": ...}` recomputes the closed
    windows overlapping that range; without it, every pending window is computed.
    """
    body = json_body(optional=True)
    start = end = None
    if body is not None:
        start, end = parse_calculation_request(body, now=clock_now(), max_range=settings().max_calculation_range)
    with guarded_redis() as redis:
        job, _created = enqueue_calculation(redis, settings(), start, end)
    return jsonify(job_view(job)), 202


@bp.get("/metrics/jobs/<job_id>")
@policy(Access.FULL, budgets=(), csrf=False)
def get_metrics_job(job_id: str) -> Response:
    with guarded_redis() as redis:
        job = get_job(redis, settings().redis_namespace, job_id)
    if job is None:
        raise NotFoundError("no such job (unknown, or its result has expired)", field="job_id")
    return jsonify(job_view(job))


@bp.get("/metrics")
@policy(Access.FULL, budgets=(READ,), csrf=False)
def get_metrics() -> Response:
    """Metrics of the windows whose start lies in `[from, till)`, ordered by window then user.

    These are the stored, final counts of closed windows. `include_open=true`
    adds `open_windows`: the windows not closed yet, counted so far from the
    events, kept apart from the paged list because they are neither final nor stored.
    """
    now = clock_now()
    query = list_query(MetricListParameters, now)
    given = query.given
    flt = MetricFilter(user_id=given.user_id, start=query.start, end=query.end)
    cursor = MetricCursor.decode(given.cursor) if given.cursor is not None else None
    page = list_metrics(database(), flt, limit=query.limit, after=cursor)
    body = MetricPage(metrics=[metric_view(metric) for metric in page.metrics],
                      next_cursor=page.next_cursor.encode() if page.next_cursor else None)
    if given.include_open == "true":
        config = settings()
        body.open_windows = [open_window_view(window, now) for window in open_windows(
            database(), now, config.window_size, config.settle, given.user_id, query.start, query.end)]
    return jsonify(body)
