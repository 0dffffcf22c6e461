"""`GET /api/events/export`: the events list's filters, answered as one streamed CSV file."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator

from flask import Response, request, stream_with_context

from ..errors import ValidationError
from ..services.events import StoredEvent, iter_events
from ..timeutil import format_rfc3339, utcnow
from . import bp
from .events import event_filter_from_query

COLUMNS = ("id", "user_id", "action", "occurred_at", "received_at", "metadata")
CHUNK_CHARS = 64 * 1024


def csv_chunks(events: Iterable[StoredEvent]) -> Iterator[str]:
    """CSV text in chunks of about 64 KiB: few enough writes to be quick, small enough to keep memory flat."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for event in events:
        writer.writerow((event.id, event.user_id, event.action, format_rfc3339(event.occurred_at),
                         format_rfc3339(event.received_at),
                         json.dumps(event.metadata, ensure_ascii=False, separators=(",", ":"))))
        if buffer.tell() >= CHUNK_CHARS:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


@bp.get("/events/export")
def export_events() -> Response:
    """Every event matching `GET /api/events`'s filters, oldest first, as `text/csv`.

    The filters are checked before the first byte goes out, so a bad one is
    still a 400 envelope; after that the rows stream from a server-side cursor.
    """
    for name in ("limit", "cursor"):
        if name in request.args:
            raise ValidationError(f"unknown query parameter {name!r}: the export holds every matching event",
                                  field=name, code="unknown_parameter")
    flt, _limit, _cursor = event_filter_from_query()
    filename = f"events-{utcnow():%Y%m%dT%H%M%SZ}.csv"
    return Response(
        stream_with_context(csv_chunks(iter_events(flt))),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
