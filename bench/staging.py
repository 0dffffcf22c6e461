"""The batch insert two ways: the service's `INSERT … SELECT FROM unnest(arrays)` beside a binary COPY
into a temporary staging table followed by one `INSERT … SELECT` from it.

The same validated events, the same table, one connection, in-process; rounds
alternate and each starts from an empty table. This is the measurement behind
keeping arrays (docs/performance.md, the write path).
"""
from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
from flask import Flask

from app.core.times import utcnow
from app.core.validation import ValidEvent
from app.extensions import database, settings
from app.services.events import new_event_ids, record_events

_STAGING = ("CREATE TEMP TABLE IF NOT EXISTS staged_events (id uuid, user_id bigint, action text, metadata text, "
            "occurred_at timestamptz) ON COMMIT DELETE ROWS")
_FROM_STAGING = ("INSERT INTO events (id, user_id, action, metadata, occurred_at, received_at) "
                 "SELECT id, user_id, action, metadata::jsonb, occurred_at, %s FROM staged_events")


def _staged(connection: psycopg.Connection, news: list[ValidEvent]) -> None:
    """Binary COPY of the rows into the staging table, then one insert from it, in one transaction."""
    now = utcnow()
    ids = new_event_ids(len(news))
    with connection.transaction():
        with connection.cursor().copy("COPY staged_events FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["uuid", "int8", "text", "text", "timestamptz"])
            for event_id, new in zip(ids, news):
                copy.write_row((event_id, new.user_id, new.action, new.metadata_json, new.occurred_at or now))
        connection.execute(_FROM_STAGING, (now,))


def compare(app: Flask, connection: psycopg.Connection, news: list[ValidEvent], truncate: Callable[[], None], *,
            batches: int = 20, rounds: int = 3) -> dict[str, float]:
    """Microseconds per event of each way (best round), `batches` inserts of `news` per round; the staged way
    runs on `connection` (autocommit, to the app's database)."""
    best = {"unnest": float("inf"), "staged": float("inf")}
    with app.app_context():
        connection.execute(_STAGING)
        window = settings().window_size
        ways: dict[str, Callable[[], None]] = {
            "unnest": lambda: record_events(database(), news, now=utcnow(), window_size=window),
            "staged": lambda: _staged(connection, news),
        }
        for _ in range(rounds):
            for name, way in ways.items():
                truncate()
                began = time.perf_counter()
                for _ in range(batches):
                    way()
                best[name] = min(best[name], (time.perf_counter() - began) / batches / len(news) * 1e6)
    return best


def describe(figures: dict[str, float], size: int) -> str:
    return (f"Inserting {size:,}-event batches in-process on one connection (wall time per event, best of 3 rounds): "
            f"the service's INSERT … SELECT FROM unnest(arrays) {figures['unnest']:.2f} us, binary COPY into a "
            f"staging table then INSERT … SELECT {figures['staged']:.2f} us "
            f"({figures['staged'] / figures['unnest']:.2f}x).")
