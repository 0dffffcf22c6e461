"""Reading API requests: the JSON body and the settings validation needs."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import current_app, request

from ..errors import ApiError
from ..validation import Limits, decode_json_body


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
