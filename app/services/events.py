"""Commands and queries on events: record one, list a filtered page.

Statements are written as SQL so the hot write path does one round trip and
the list query is a plain keyset scan of an index.
"""
from __future__ import annotations

import json
import math
import os
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
import sqlalchemy as sa

from ..core.database import Database, Writer
from ..core.errors import ConflictError, ValidationError
from ..core.partitions import partitions_for
from ..core.tables import events as events_table
from ..core.validation import ValidEvent
from ..core.windows import EPOCH, floor_window
from .pagination import decode_cursor, encode_cursor, keyset_page
from .partitions import create_partitions, is_missing_partition


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ is slower, and one is made per event
class StoredEvent:
    id: uuid.UUID
    user_id: int
    action: str
    metadata: dict[str, Any]
    occurred_at: datetime
    received_at: datetime


@dataclass(frozen=True)
class Recorded:
    """What one call to `record_events` did: each event as stored and whether this call created it."""

    results: list[tuple[StoredEvent, bool]]
    late: int  # events created in a window that had already closed
    group: int = 1  # events committed by the same statement, these included (the group commit's reach)

    @property
    def created(self) -> int:
        return sum(1 for _, was_created in self.results if was_created)

    @property
    def duplicates(self) -> int:
        return len(self.results) - self.created


_V7_MARKERS = (0x7 << 76) | (0x2 << 62)  # version 7, RFC 4122 variant
_RANDOM_BITS = (2**80 - 1) & ~((0xF << 76) | (0x3 << 62))  # the 74 random bits around them


def new_event_ids(count: int) -> list[uuid.UUID]:
    """UUIDv7s: time-ordered, so new rows land at the right edge of the primary key index.

    A batch draws its randomness in one read for all its ids rather than one
    read per id.
    """
    prefix = (time.time_ns() // 1_000_000 & (2**48 - 1)) << 80 | _V7_MARKERS
    noise = os.urandom(10 * count)
    return [uuid.UUID(int=prefix | int.from_bytes(noise[i:i + 10], "big") & _RANDOM_BITS)
            for i in range(0, 10 * count, 10)]


# One event with the service's id, in an open window: the common case, and the cheapest statement there is.
# That id is new by construction, so the insert stores the row or fails; nothing comes back.
_INSERT_ONE = """
INSERT INTO events (id, user_id, action, metadata, occurred_at, received_at)
VALUES (%(id)s, %(user_id)s, %(action)s, %(metadata)s::jsonb, %(occurred_at)s, %(received_at)s)
"""

# Many events with the service's ids, in open windows: one row per element of the binary arrays. Every row
# goes in or the statement fails, so only the count comes back (decoding a batch's rows would cost more than
# its validation).
_INSERT_MANY = """
INSERT INTO events (id, user_id, action, metadata, occurred_at, received_at)
SELECT id, user_id, action, metadata, occurred_at, %(received_at)s
FROM unnest(%(ids)b::uuid[], %(user_ids)b::bigint[], %(actions)b::text[], %(metadata)b::jsonb[],
            %(occurred_at)b::timestamptz[]) AS t(id, user_id, action, metadata, occurred_at)
"""

# Everything else: events with ids the client chose (`client`), late events, or both. Each client id first
# claims its key in event_keys (the first occurrence of a key in the call does, in key order so two calls
# never deadlock); only events that claimed theirs, and those with the service's ids, go in. Late events
# mark their closed windows stale in the same statement, so the next calculation recounts them. The rows
# inserted come back: a client id missing from them was seen before.
_INSERT_KEYED_OR_LATE = """
WITH input AS (
    SELECT * FROM unnest(%(ids)b::uuid[], %(user_ids)b::bigint[], %(actions)b::text[], %(metadata)b::jsonb[],
                         %(occurred_at)b::timestamptz[], %(clients)b::boolean[]) WITH ORDINALITY
                  AS t(id, user_id, action, metadata, occurred_at, client, ord)
), firsts AS (
    SELECT DISTINCT ON (user_id, id) ord, user_id, id, occurred_at FROM input WHERE client ORDER BY user_id, id, ord
), claimed AS (
    INSERT INTO event_keys (user_id, id, occurred_at)
    SELECT user_id, id, occurred_at FROM firsts ORDER BY user_id, id
    ON CONFLICT (user_id, id) DO NOTHING
    RETURNING user_id, id
), inserted AS (
    INSERT INTO events (id, user_id, action, metadata, occurred_at, received_at)
    SELECT i.id, i.user_id, i.action, i.metadata, i.occurred_at, %(received_at)s FROM input i
    WHERE NOT i.client OR i.ord IN (SELECT f.ord FROM firsts f JOIN claimed c USING (user_id, id))
    -- a client may send an id the service once made: then the same time is the same event
    ON CONFLICT (user_id, occurred_at, id) DO NOTHING
    RETURNING user_id, id, occurred_at
), late AS (
    INSERT INTO metrics_windows (window_start, window_end, stale)
    SELECT DISTINCT window_start, window_start + %(size)s, true
    FROM (SELECT date_bin(%(size)s, occurred_at, %(origin)s) AS window_start FROM inserted) AS windows
    WHERE window_start + %(size)s <= %(received_at)s
    -- every writer locks ledger rows in window order, so two batches never deadlock
    ORDER BY window_start
    ON CONFLICT (window_start) DO UPDATE SET stale = true WHERE NOT metrics_windows.stale
)
SELECT user_id, id, occurred_at FROM inserted
"""

# The stored events of client ids seen before: their key says where each one is.
_SELECT_KEYED = """
SELECT e.id, e.user_id, e.action, e.metadata, e.occurred_at, e.received_at
FROM unnest(%(user_ids)s::bigint[], %(ids)s::uuid[]) AS wanted(user_id, id)
JOIN event_keys k USING (user_id, id)
JOIN events e ON e.user_id = k.user_id AND e.occurred_at = k.occurred_at AND e.id = k.id
"""

EventKey = tuple[int, uuid.UUID]


def _same_event(stored: StoredEvent, new: ValidEvent) -> bool:
    """Whether a retry carries what was stored (an omitted occurred_at matches any)."""
    if (stored.user_id, stored.action, stored.metadata) != (new.user_id, new.action, new.metadata):
        return False
    return new.occurred_at is None or new.occurred_at == stored.occurred_at


def _insert_statement(events: list[StoredEvent], news: Sequence[ValidEvent], window_size: timedelta,
                      late: bool, keyed: bool) -> tuple[str, dict[str, Any]]:
    """The cheapest of the three inserts that stores these events, and its parameters."""
    if not (keyed or late) and len(events) == 1:
        event = events[0]
        return _INSERT_ONE, {"id": event.id, "user_id": event.user_id, "action": event.action,
                             "metadata": news[0].metadata_json, "occurred_at": event.occurred_at,
                             "received_at": event.received_at}
    params: dict[str, Any] = {
        "received_at": events[0].received_at,
        "ids": [event.id for event in events],
        "user_ids": [event.user_id for event in events],
        "actions": [event.action for event in events],
        "metadata": [new.metadata_json for new in news],
        "occurred_at": [event.occurred_at for event in events],
    }
    if not (keyed or late):
        return _INSERT_MANY, params
    params.update(clients=[new.id is not None for new in news], size=window_size, origin=EPOCH)
    return _INSERT_KEYED_OR_LATE, params


def record_events(database: Writer, news: Sequence[ValidEvent], *, now: datetime,
                  window_size: timedelta) -> Recorded:
    """Store events once each, in one statement, all or none.

    Returns each event as stored and whether this call created it. A client id
    seen before for the same user returns the stored event instead of a second
    row; the same id with different content is a conflict and nothing is
    stored. Events that fall into an already closed window mark that window
    stale in the same statement, so the next calculation recounts it.

    One event needs no transaction block: its statement commits on its own, and
    when it inserted no row it wrote nothing to undo. A batch runs in one, so a
    conflict found after the insert rolls back the rows it did insert.

    An event for a day that has no partition yet (a late one, typically) makes
    the insert fail as a whole; the partitions the call needs are then created
    and the call runs once more.
    """
    fresh_ids = iter(new_event_ids(sum(1 for new in news if new.id is None)))
    events = [
        StoredEvent(new.id or next(fresh_ids), new.user_id, new.action, new.metadata, new.occurred_at or now, now)
        for new in news
    ]
    # An event is late when its window has already ended (it started before the current one).
    current_window = floor_window(now, window_size)
    late = [event.occurred_at < current_window for event in events]
    keyed = any(new.id is not None for new in news)
    statement, params = _insert_statement(events, news, window_size, any(late), keyed)
    try:
        results = _store(database, events, news, statement, params, keyed)
    except psycopg.errors.CheckViolation as error:
        if not is_missing_partition(error):
            raise
        with database.write() as connection:
            create_partitions(connection, partitions_for([event.occurred_at for event in events]))
        results = _store(database, events, news, statement, params, keyed)
    return Recorded(results, late=sum(1 for (_, was_created), is_late in zip(results, late) if was_created and is_late))


def _store(database: Writer, events: list[StoredEvent], news: Sequence[ValidEvent], statement: str,
           params: dict[str, Any], keyed: bool) -> list[tuple[StoredEvent, bool]]:
    """Run the insert; with client ids, look up the stored events of those that were not new."""
    # One statement commits on its own: only client ids, whose conflicts are found after the insert, need a
    # transaction block to roll the inserted rows back (BEGIN and COMMIT are two more round trips).
    with database.write() as connection, connection.transaction() if keyed and len(events) > 1 else nullcontext():
        cursor = connection.execute(statement, params)
        if not keyed:  # the service's ids: every row went in, or the statement failed
            return [(event, True) for event in events]
        inserted = cursor.fetchall()
        if len(inserted) == len(events):
            return [(event, True) for event in events]
        created = {(row[0], row[1]) for row in inserted}
        retried = [(event.user_id, event.id) for event in events if (event.user_id, event.id) not in created]
        stored = {(row[1], row[0]): StoredEvent(*row) for row in connection.execute(
            _SELECT_KEYED, {"user_ids": [key[0] for key in retried], "ids": [key[1] for key in retried]})}
        return _resolve_retries(events, news, created, stored)


def _resolve_retries(events: list[StoredEvent], news: Sequence[ValidEvent], created: set[EventKey],
                     stored: dict[EventKey, StoredEvent]) -> list[tuple[StoredEvent, bool]]:
    """Match events whose key was not new against what is stored; raise on any conflict.

    Raised inside the transaction, the conflict rolls back every row of the call.
    """
    results: list[tuple[StoredEvent, bool]] = []
    conflicts = []
    first_of: dict[EventKey, int] = {}
    for index, (event, new) in enumerate(zip(events, news)):
        key = (event.user_id, event.id)
        fresh = key in created and first_of.setdefault(key, index) == index
        earlier = stored.get(key) or (events[first_of[key]] if key in first_of else None)
        if not fresh and (earlier is None or not _same_event(earlier, new)):
            conflicts.append({"index": index, "field": "id",
                              "message": "an event with this id already exists with different content"})
        # a retry answers with the event as stored, also when this very call stored it
        results.append((event, True) if fresh else (earlier or event, False))
    if conflicts:
        raise ConflictError(conflicts[0]["message"] if len(events) == 1 else
                            f"{len(conflicts)} events reuse an id with different content",
                            field="id", code="id_conflict", details=conflicts if len(events) > 1 else None)
    return results


@dataclass(frozen=True)
class EventFilter:
    """Which events to list; every part is optional. The range is half-open `[start, end)`."""

    user_id: int | None = None
    action: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EventCursor:
    """Position after the last row of a page: keyset pagination on (occurred_at, id)."""

    occurred_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        return encode_cursor(self.occurred_at, self.id)

    @classmethod
    def decode(cls, token: str) -> EventCursor:
        moment, key = decode_cursor(token)
        try:
            return cls(moment, uuid.UUID(key))
        except ValueError:
            raise ValidationError("is not a cursor returned by this API", field="cursor") from None


@dataclass(frozen=True)
class StoredEventPage:
    events: list[StoredEvent]
    next_cursor: EventCursor | None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is no JSON value")


def _metadata_condition(key: str, value: str) -> sa.ColumnElement[bool]:
    """`key = value` as JSONB containment; `5` or `true` also match the JSON number or boolean.

    Only values JSON can hold count as numbers: `NaN`, `Infinity` or `1e400`
    (a float overflowing to infinity) match the text alone.
    """
    column = events_table.c.metadata
    candidates: list[Any] = [value]
    try:
        parsed = json.loads(value, parse_constant=_reject_constant)
    except ValueError:
        parsed = value
    if isinstance(parsed, float) and not math.isfinite(parsed):
        parsed = value
    if isinstance(parsed, (int, float, bool)) or parsed is None:
        candidates.append(parsed)
    return sa.or_(*(column.contains({key: candidate}) for candidate in candidates))


def _filtered(statement: sa.Select[Any], flt: EventFilter) -> sa.Select[Any]:
    table = events_table
    if flt.user_id is not None:
        statement = statement.where(table.c.user_id == flt.user_id)
    if flt.action is not None:
        statement = statement.where(table.c.action == flt.action)
    if flt.start is not None:
        statement = statement.where(table.c.occurred_at >= flt.start)
    if flt.end is not None:
        statement = statement.where(table.c.occurred_at < flt.end)
    for key, value in flt.metadata.items():
        statement = statement.where(_metadata_condition(key, value))
    return statement


def _select_events() -> sa.Select[Any]:
    table = events_table
    return sa.select(table.c.id, table.c.user_id, table.c.action, table.c.metadata,
                     table.c.occurred_at, table.c.received_at)


def list_events(database: Database, flt: EventFilter, *, limit: int, after: EventCursor | None = None,
                newest_first: bool = False) -> StoredEventPage:
    """One page of events in time order, and the cursor of the next page if there is one.

    `newest_first` walks the same indexes backwards, for the dashboard, which
    shows the latest activity on top; its cursor then points at older events.
    """
    table = events_table
    rows, last = keyset_page(database, _filtered(_select_events(), flt), (table.c.occurred_at, table.c.id),
                             (after.occurred_at, after.id) if after else None, limit, descending=newest_first)
    events = [StoredEvent(*row) for row in rows]
    next_cursor = EventCursor(last.occurred_at, last.id) if last else None
    return StoredEventPage(events, next_cursor)


def oldest_event_time(database: Database) -> datetime | None:
    """When the oldest event still stored happened (one index probe per partition at most:
    the partitions are scanned in time order and the first that holds a row ends it)."""
    with database.read() as connection:
        return connection.execute(sa.select(sa.func.min(events_table.c.occurred_at))).scalar_one()


def iter_events(database: Database, flt: EventFilter, *, batch_size: int = 1000) -> Iterator[StoredEvent]:
    """Every matching event in time order, read as keyset pages of `batch_size` rows.

    Each page is a short read of its own that hands its connection back before
    the rows are yielded, so memory stays flat however many rows match, and a
    client that stops reading an export holds no connection and no transaction
    (a server-side cursor would keep a backend `idle in transaction` for as long
    as the client's socket lives). Like the list's pages, the export is not one
    snapshot: an event stored meanwhile appears when it sorts after the page
    being read.
    """
    after: EventCursor | None = None
    while True:
        page = list_events(database, flt, limit=batch_size, after=after)
        yield from page.events
        if page.next_cursor is None:
            return
        after = page.next_cursor
