"""Reading API requests: the JSON body and the settings validation needs."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app, request

from ..errors import ApiError
from ..validation import (Limits, check_range, decode_json_body, parse_query_int, parse_query_time,
                          single_params)


def json_body(*, optional: bool = False) -> Any:
    """The request's JSON document; 415 for another content type, 400 when malformed.

    With `optional`, an empty body without a content type reads as None
    (`POST /api/metrics` is called with no body by the original's clients).
    """
    raw = request.get_data(cache=False)
    if optional and not raw.strip() and request.mimetype in ("", "application/json"):
        return None
    if request.mimetype != "application/json":
        raise ApiError("send the body as application/json", status=415, code="unsupported_media_type")
    return decode_json_body(raw)


def limits() -> Limits:
    config = current_app.config
    return Limits(
        metadata_max_bytes=config["METADATA_MAX_BYTES"],
        future_tolerance=timedelta(seconds=config["EVENT_FUTURE_TOLERANCE_SECONDS"]),
    )


def window_size() -> timedelta:
    return timedelta(hours=current_app.config["METRICS_WINDOW_HOURS"])


@dataclass(frozen=True)
class ListQuery:
    """The parameters every list endpoint shares, validated; `params` holds the rest."""

    params: dict[str, str]
    user_id: int | None
    start: datetime | None
    end: datetime | None
    limit: int


def list_query(allowed: set[str], prefixes: tuple[str, ...] = ()) -> ListQuery:
    """Parse `user_id`, `from`, `till` (half-open range) and `limit` from the query string."""
    params = single_params(request.args.to_dict(flat=False), allowed | {"user_id", "from", "till", "limit"},
                           prefixes=prefixes)
    start = parse_query_time(params["from"], "from") if "from" in params else None
    end = parse_query_time(params["till"], "till") if "till" in params else None
    check_range(start, end)
    config = current_app.config
    limit = config["LIST_DEFAULT_LIMIT"]
    if "limit" in params:
        limit = parse_query_int(params["limit"], "limit", maximum=config["LIST_MAX_LIMIT"])
    user_id = parse_query_int(params["user_id"], "user_id") if "user_id" in params else None
    return ListQuery(params, user_id, start, end, limit)
