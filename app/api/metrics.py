"""`/api/metrics`: list metrics, trigger a calculation, follow its job."""
from __future__ import annotations

from flask import Response, current_app, jsonify, request, url_for

from ..errors import NotFoundError, ValidationError
from ..services.jobs import JobInfo, enqueue_calculation, get_job
from ..services.metrics import MetricCursor, MetricFilter, list_metrics
from ..validation import check_range, parse_query_int, parse_query_time, parse_timestamp, single_params
from . import bp
from .requests import json_body

LIST_PARAMS = {"user_id", "from", "till", "limit", "cursor"}


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
    job = get_job(job_id) if len(job_id) <= 128 else None
    if job is None:
        raise NotFoundError("no such job (unknown, or its result has expired)", field="job_id")
    return jsonify(job=_job_json(job))


@bp.get("/metrics")
def get_metrics() -> Response:
    """Metrics of the windows whose start lies in `[from, till)`, ordered by window then user."""
    params = single_params(request.args.to_dict(flat=False), LIST_PARAMS)
    start = parse_query_time(params["from"], "from") if "from" in params else None
    end = parse_query_time(params["till"], "till") if "till" in params else None
    check_range(start, end)
    config = current_app.config
    limit = config["LIST_DEFAULT_LIMIT"]
    if "limit" in params:
        limit = parse_query_int(params["limit"], "limit", maximum=config["LIST_MAX_LIMIT"])
    flt = MetricFilter(
        user_id=parse_query_int(params["user_id"], "user_id") if "user_id" in params else None,
        start=start,
        end=end,
    )
    cursor = MetricCursor.decode(params["cursor"]) if "cursor" in params else None
    page = list_metrics(flt, limit=limit, after=cursor)
    return jsonify(
        metrics=[metric.to_json() for metric in page.metrics],
        next_cursor=page.next_cursor.encode() if page.next_cursor else None,
    )
