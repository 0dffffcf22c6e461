"""Events as a streamed CSV download, shared by the API's export and the dashboard's.

The rows come from keyset pages (`iter_events`) and leave in chunks, so memory
stays flat however many events match.

Whoever can record an event chooses its `action`, and the file is opened by
people in spreadsheets, which run a cell starting with `=` (or `+`, `-`, `@`,
tab, carriage return) as a formula. Every such cell is neutralised as OWASP
recommends: a leading `'` makes it text, and every text cell is quoted so a
separator inside it cannot start a new cell in a spreadsheet that splits on
another character.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator

from flask import Response, stream_with_context

from ..core.database import Database
from ..core.times import format_rfc3339
from ..extensions import now
from ..services.events import EventFilter, StoredEvent, iter_events

COLUMNS = ("id", "user_id", "action", "occurred_at", "received_at", "metadata")
CHUNK_CHARS = 64 * 1024
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: str) -> str:
    """The cell as a spreadsheet shows it but never evaluates it: `'=1+1` is the text `=1+1`."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def csv_chunks(events: Iterable[StoredEvent]) -> Iterator[str]:
    """CSV text in chunks of about 64 KiB: few enough writes to be quick, small enough to keep memory flat."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(COLUMNS)
    # Text cells quoted, numbers (user_id) bare. Only `action` is free text at its start: the
    # other cells are a UUID, an integer, timestamps and a JSON object, which starts with `{`.
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_NONNUMERIC)
    for event in events:
        writer.writerow((str(event.id), event.user_id, neutralise(event.action), format_rfc3339(event.occurred_at),
                         format_rfc3339(event.received_at),
                         json.dumps(event.metadata, ensure_ascii=False, separators=(",", ":"))))
        if buffer.tell() >= CHUNK_CHARS:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def csv_download(database: Database, flt: EventFilter) -> Response:
    """Every event matching `flt`, oldest first, as a `text/csv` attachment streamed from the database.

    Check the filter before calling this: once the first byte is out, an
    error can no longer change the status.
    """
    filename = f"events-{now():%Y%m%dT%H%M%SZ}.csv"
    return Response(
        stream_with_context(csv_chunks(iter_events(database, flt))),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
