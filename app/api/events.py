"""`POST /api/event` and `GET /api/events`: thin adapters over the events service."""
from __future__ import annotations

from flask import Response, current_app, jsonify, request

from ..services.events import Cursor, EventFilter, list_events, record_event
from ..timeutil import utcnow
from ..validation import (check_range, parse_event, parse_query_int, parse_query_time,
                          single_params)
from . import bp
from .requests import json_body, limits, window_size

LIST_PARAMS = {"user_id", "action", "from", "till", "limit", "cursor"}
META_PREFIX = "meta."


@bp.post("/event")
def create_event() -> tuple[Response, int]:
    """Store one event: 201 when new, 200 when the same client id was stored before."""
    now = utcnow()
    new = parse_event(json_body(), now=now, limits=limits())
    event, created = record_event(new, now=now, window_size=window_size())
    return jsonify(event.to_json()), 201 if created else 200


def event_filter_from_query() -> tuple[EventFilter, int, Cursor | None]:
    """Parse the list parameters shared by the JSON list and the CSV export."""
    params = single_params(request.args.to_dict(flat=False), LIST_PARAMS, prefixes=(META_PREFIX,))
    start = parse_query_time(params["from"], "from") if "from" in params else None
    end = parse_query_time(params["till"], "till") if "till" in params else None
    check_range(start, end)
    metadata = {key[len(META_PREFIX):]: value for key, value in params.items() if key.startswith(META_PREFIX)}
    flt = EventFilter(
        user_id=parse_query_int(params["user_id"], "user_id") if "user_id" in params else None,
        action=params.get("action"),
        start=start,
        end=end,
        metadata=metadata,
    )
    config = current_app.config
    limit = config["LIST_DEFAULT_LIMIT"]
    if "limit" in params:
        limit = parse_query_int(params["limit"], "limit", maximum=config["LIST_MAX_LIMIT"])
    cursor = Cursor.decode(params["cursor"]) if "cursor" in params else None
    return flt, limit, cursor


@bp.get("/events")
def get_events() -> Response:
    """Events in time order within `[from, till)`, one keyset page at a time."""
    flt, limit, cursor = event_filter_from_query()
    page = list_events(flt, limit=limit, after=cursor)
    return jsonify(
        events=[event.to_json() for event in page.events],
        next_cursor=page.next_cursor.encode() if page.next_cursor else None,
    )
