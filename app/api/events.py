"""`POST /api/event` and `GET /api/events`: thin adapters over the events service."""
from __future__ import annotations

from flask import Response, jsonify

from ..errors import ValidationError
from ..services.events import Cursor, EventFilter, list_events, record_event, record_events
from ..timeutil import utcnow
from ..validation import NewEvent, parse_event
from . import bp
from .requests import json_body, limits, list_query, window_size

META_PREFIX = "meta."
MAX_BATCH = 1000


@bp.post("/event")
def create_event() -> tuple[Response, int]:
    """Store one event: 201 when new, 200 when the same client id was stored before."""
    now = utcnow()
    new = parse_event(json_body(), now=now, limits=limits())
    event, created = record_event(new, now=now, window_size=window_size())
    return jsonify(event.to_json()), 201 if created else 200


@bp.post("/events/batch")
def create_events_batch() -> Response:
    """Store up to 1,000 events at once, all or none.

    Any invalid item rejects the whole batch with one error per bad index, so
    a client can fix and resend it; ids already stored count as duplicates.
    """
    now = utcnow()
    body = json_body()
    if not isinstance(body, dict) or set(body) != {"events"}:
        raise ValidationError('request body must be an object {"events": [...]}', field="events")
    items = body["events"]
    if not isinstance(items, list) or not items:
        raise ValidationError("must be a non-empty array of events", field="events")
    if len(items) > MAX_BATCH:
        raise ValidationError(f"must hold at most {MAX_BATCH} events", field="events", code="batch_too_large")
    news: list[NewEvent] = []
    errors = []
    bounds = limits()
    for index, item in enumerate(items):
        try:
            news.append(parse_event(item, now=now, limits=bounds))
        except ValidationError as exc:
            errors.append({"index": index, "field": exc.field, "message": exc.message})
    if errors:
        raise ValidationError(f"{len(errors)} of {len(items)} events are invalid; nothing was stored",
                              field="events", code="invalid_batch", details=errors)
    results = record_events(news, now=now, window_size=window_size())
    created = sum(1 for _, was_created in results if was_created)
    return jsonify(
        created=created,
        duplicates=len(results) - created,
        # UUIDs as they are: the JSON provider writes them as strings without a str() each
        events=[{"id": event.id, "status": "created" if was_created else "duplicate"}
                for event, was_created in results],
    )


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
