"""`POST /api/event` and `GET /api/events`: thin adapters over the events service."""
from __future__ import annotations

from flask import Response, jsonify

from ..services.events import Cursor, EventFilter, list_events, record_event
from ..timeutil import utcnow
from ..validation import parse_event
from . import bp
from .requests import json_body, limits, list_query, window_size

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
    query = list_query({"action", "cursor"}, prefixes=(META_PREFIX,))
    metadata = {key[len(META_PREFIX):]: value for key, value in query.params.items()
                if key.startswith(META_PREFIX)}
    flt = EventFilter(user_id=query.user_id, action=query.params.get("action"), start=query.start,
                      end=query.end, metadata=metadata)
    cursor = Cursor.decode(query.params["cursor"]) if "cursor" in query.params else None
    return flt, query.limit, cursor


@bp.get("/events")
def get_events() -> Response:
    """Events in time order within `[from, till)`, one keyset page at a time."""
    flt, limit, cursor = event_filter_from_query()
    page = list_events(flt, limit=limit, after=cursor)
    return jsonify(
        events=[event.to_json() for event in page.events],
        next_cursor=page.next_cursor.encode() if page.next_cursor else None,
    )
