"""`POST /api/event`, `POST /api/events/batch` and `GET /api/events`: thin adapters over the events service."""
from __future__ import annotations

from flask import Response, jsonify

from ..core.list_parameters import EventExportParameters, EventListParameters
from ..core.validation import parse_batch, parse_event
from ..extensions import database, now as clock_now, runtime, settings
from ..http.policy import Access, policy, spend_events
from ..http.rate_limits import INGEST, READ
from ..ops.prometheus import count_events
from ..services.events import EventCursor, EventFilter, Recorded, list_events, record_events
from . import bp
from .inputs import input_bounds, json_body, list_query
from .representations import BatchItem, BatchResult, EventPage, event_view


def _counted(recorded: Recorded, *, single: bool = False) -> Recorded:
    count_events(created=recorded.created, duplicates=recorded.duplicates, late=recorded.late,
                 group=recorded.group if single else None)
    return recorded


@bp.post("/event")
@policy(Access.INGEST, budgets=(INGEST,), csrf=False)
def create_event() -> tuple[Response, int]:
    """Store one event: 201 when new, 200 when the same client id was stored before.

    The event is committed with whatever others this process receives at the same time (group commit).
    """
    now = clock_now()
    new = parse_event(json_body(), now=now, bounds=input_bounds())
    event, created = _counted(runtime().group_commit.record(new, now=now), single=True).results[0]
    return jsonify(event_view(event)), 201 if created else 200


@bp.post("/events/batch")
@policy(Access.INGEST, budgets=(INGEST,), csrf=False)
def create_events_batch() -> Response:
    """Store up to 1,000 events at once, all or none.

    Any invalid item rejects the whole batch with one error per bad index, so
    a client can fix and resend it; ids already stored count as duplicates.
    """
    now = clock_now()
    news = parse_batch(json_body(), now=now, bounds=input_bounds())
    spend_events(len(news))
    recorded = _counted(record_events(database(), news, now=now, window_size=settings().window_size))
    # every event id we return is also under the original's name, `uuid`
    return jsonify(BatchResult(
        created=recorded.created, duplicates=recorded.duplicates,
        events=[BatchItem(id=event.id, uuid=event.id, status="created" if was_created else "duplicate")
                for event, was_created in recorded.results]))


def event_filter(kind: type[EventExportParameters] = EventListParameters,
                 ) -> tuple[EventFilter, int, EventCursor | None]:
    """The events' filters (and page) from the query string: shared by the JSON list and the CSV export."""
    query = list_query(kind, clock_now())
    given = query.given
    flt = EventFilter(user_id=given.user_id, action=given.action, start=query.start, end=query.end,
                      metadata=query.metadata)
    cursor = getattr(given, "cursor", None)
    return flt, query.limit, EventCursor.decode(cursor) if cursor is not None else None


@bp.get("/events")
@policy(Access.FULL, budgets=(READ,), csrf=False)
def get_events() -> Response:
    """Events in time order within `[from, till)`, one keyset page at a time."""
    flt, limit, cursor = event_filter()
    page = list_events(database(), flt, limit=limit, after=cursor)
    return jsonify(EventPage(events=[event_view(event) for event in page.events],
                             next_cursor=page.next_cursor.encode() if page.next_cursor else None))
