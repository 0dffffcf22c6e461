"""`/api/metrics`: list metrics, trigger a calculation, follow its job."""
from __future__ import annotations

from flask import Response, jsonify, url_for

from ..errors import NotFoundError, ValidationError
from ..services.jobs import JobInfo, enqueue_calculation, get_job
from ..services.metrics import MetricCursor, MetricFilter, list_metrics
from ..validation import check_range, parse_timestamp
from . import bp
from .requests import json_body, list_query

def _job_json(job: JobInfo) -> dict[str, object]:
    return {**job.to_json(), "url": url_for("api.get_metrics_job", job_id=job.id, _external=False)}


@bp.post("/metrics")
def trigger_metrics() -> tuple[Response, int]:
    """Queue a calculation (202); a pending one for the same range is returned instead of a new one.

    An optional body `{"from": ..., "till": ...}` recomputes the closed
    windows overlapping that range; without it, every pending window is computed.
    """
    body = json_body(optional=True)
    start = end = None
    if body is not None:
        if not isinstance(body, dict):
            raise ValidationError("request body must be a JSON object")
        unknown = sorted(set(body) - {"from", "till"})
        if unknown:
            raise ValidationError(f"unknown field {unknown[0]!r}", field=unknown[0], code="unknown_field")
        if (body.get("from") is None) != (body.get("till") is None):
            raise ValidationError("give both `from` and `till`, or neither",
                                  field="till" if body.get("till") is None else "from")
        if body.get("from") is not None:
            start = parse_timestamp(body["from"], "from")
            end = parse_timestamp(body["till"], "till")
            check_range(start, end)
    job, _created = enqueue_calculation(start, end)
    return jsonify(job=_job_json(job)), 202


@bp.get("/metrics/jobs/<job_id>")
def get_metrics_job(job_id: str) -> Response:
    job = get_job(job_id)
    if job is None:
        raise NotFoundError("no such job (unknown, or its result has expired)", field="job_id")
    return jsonify(job=_job_json(job))


@bp.get("/metrics")
def get_metrics() -> Response:
    """Metrics of the windows whose start lies in `[from, till)`, ordered by window then user."""
    query = list_query({"cursor"})
    flt = MetricFilter(user_id=query.user_id, start=query.start, end=query.end)
    cursor = MetricCursor.decode(query.params["cursor"]) if "cursor" in query.params else None
    page = list_metrics(flt, limit=query.limit, after=cursor)
    return jsonify(
        metrics=[metric.to_json() for metric in page.metrics],
        next_cursor=page.next_cursor.encode() if page.next_cursor else None,
    )
