"""Commands and queries on events: record one, list a filtered page.

Statements are written as SQL so the hot write path does one round trip and
the list query is a plain keyset scan of an index.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ..database import read_connection
from ..errors import ConflictError, ValidationError
from ..extensions import db
from ..models import Event
from ..telemetry import count_events
from ..timeutil import format_rfc3339
from ..validation import NewEvent
from ..windows import window_of
from .cursors import decode_cursor, encode_cursor


@dataclass(frozen=True)
class StoredEvent:
    id: uuid.UUID
    user_id: int
    action: str
    metadata: dict[str, Any]
    occurred_at: datetime
    received_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "user_id": self.user_id,
            "action": self.action,
            "metadata": self.metadata,
            "occurred_at": format_rfc3339(self.occurred_at),
            "received_at": format_rfc3339(self.received_at),
        }


def new_event_id() -> uuid.UUID:
    """A UUIDv7: time-ordered, so new rows land at the right edge of the primary key index."""
    millis = time.time_ns() // 1_000_000
    value = (millis & (2**48 - 1)) << 80 | int.from_bytes(os.urandom(10), "big") & (2**80 - 1)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return uuid.UUID(int=value)


_INSERT_EVENT = sa.text("""
WITH inserted AS (
    INSERT INTO events (id, user_id, action, metadata, occurred_at, received_at)
    VALUES (:id, :user_id, :action, CAST(:metadata AS jsonb), :occurred_at, :received_at)
    ON CONFLICT (id) DO NOTHING
    RETURNING 1
), late AS (
    INSERT INTO metrics_windows (window_start, window_end, stale)
    SELECT :window_start, :window_end, true FROM inserted WHERE :late
    ON CONFLICT (window_start) DO UPDATE SET stale = true WHERE NOT metrics_windows.stale
)
SELECT count(*) FROM inserted
""")

_SELECT_EVENT = sa.text(
    "SELECT id, user_id, action, metadata, occurred_at, received_at FROM events WHERE id = :id"
)


def record_event(new: NewEvent, *, now: datetime, window_size: timedelta) -> tuple[StoredEvent, bool]:
    """Store an event once; return it and whether this call created it.

    A retry with the same client id returns the stored event instead of a
    second row; the same id with different content is a conflict. An event
    that falls into an already closed window marks that window stale in the
    same statement, so the next calculation recounts it.
    """
    event = StoredEvent(
        id=new.id or new_event_id(),
        user_id=new.user_id,
        action=new.action,
        metadata=new.metadata,
        occurred_at=new.occurred_at or now,
        received_at=now,
    )
    window = window_of(event.occurred_at, window_size)
    late = window.end <= now
    created = db.session.execute(_INSERT_EVENT, {
        "id": event.id,
        "user_id": event.user_id,
        "action": event.action,
        "metadata": new.metadata_json,
        "occurred_at": event.occurred_at,
        "received_at": event.received_at,
        "window_start": window.start,
        "window_end": window.end,
        "late": late,
    }).scalar_one() == 1
    db.session.commit()
    if created:
        count_events(created=1, late=int(late))
        return event, True

    row = db.session.execute(_SELECT_EVENT, {"id": event.id}).one()
    db.session.rollback()
    existing = StoredEvent(*row)
    same = (existing.user_id, existing.action, existing.metadata) == (new.user_id, new.action, new.metadata)
    if not same or (new.occurred_at is not None and existing.occurred_at != new.occurred_at):
        raise ConflictError("an event with this id already exists with different content", field="id",
                            code="id_conflict")
    count_events(duplicates=1)
    return existing, False


@dataclass(frozen=True)
class EventFilter:
    """Which events to list; every part is optional. The range is half-open `[start, end)`."""

    user_id: int | None = None
    action: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Cursor:
    """Position after the last row of a page: keyset pagination on (occurred_at, id)."""

    occurred_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        return encode_cursor(self.occurred_at, self.id)

    @classmethod
    def decode(cls, token: str) -> Cursor:
        moment, key = decode_cursor(token)
        try:
            return cls(moment, uuid.UUID(key))
        except ValueError:
            raise ValidationError("is not a cursor returned by this API", field="cursor") from None


@dataclass(frozen=True)
class EventPage:
    events: list[StoredEvent]
    next_cursor: Cursor | None


def _metadata_condition(key: str, value: str) -> sa.ColumnElement[bool]:
    """`key = value` as JSONB containment; `5` or `true` also match the JSON number or boolean."""
    column = Event.__table__.c.metadata
    candidates: list[Any] = [value]
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    if isinstance(parsed, (int, float, bool)) or parsed is None:
        candidates.append(parsed)
    return sa.or_(*(column.contains({key: candidate}) for candidate in candidates))


def _filtered(statement: sa.Select[Any], flt: EventFilter) -> sa.Select[Any]:
    table = Event.__table__
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
    table = Event.__table__
    return sa.select(table.c.id, table.c.user_id, table.c.action, table.c.metadata,
                     table.c.occurred_at, table.c.received_at)


def list_events(flt: EventFilter, *, limit: int, after: Cursor | None = None) -> EventPage:
    """One page of events in time order, and the cursor of the next page if there is one."""
    table = Event.__table__
    statement = _filtered(_select_events(), flt)
    if after is not None:
        statement = statement.where(sa.tuple_(table.c.occurred_at, table.c.id) > (after.occurred_at, after.id))
    statement = statement.order_by(table.c.occurred_at, table.c.id).limit(limit + 1)
    with read_connection() as connection:
        rows = connection.execute(statement).all()
    events = [StoredEvent(*row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = events[-1]
        next_cursor = Cursor(last.occurred_at, last.id)
    return EventPage(events, next_cursor)
