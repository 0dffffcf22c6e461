"""Where statements go: writes to the primary, list queries to the read engine.

Queries call `read_connection()`; when `DATABASE_READ_URL` names a replica the
list endpoints move there without any change to the service layer.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine

from .extensions import db


def read_engine() -> Engine:
    return db.engines.get("read") or db.engine


@contextmanager
def read_connection() -> Iterator[Connection]:
    """A short read-only unit of work on the read engine."""
    with read_engine().connect() as connection:
        yield connection
        connection.rollback()


@contextmanager
def write_connection() -> Iterator[psycopg.Connection[Any]]:
    """The primary's psycopg connection, from SQLAlchemy's pool, in autocommit mode.

    For the event write path: its statements are fixed SQL, so the driver runs
    them directly (prepared after a few runs on a connection) instead of through
    SQLAlchemy's execution layer, which costs more per call than the statement
    itself. Each statement commits on its own; `connection.transaction()` groups
    several. A connection the server dropped is discarded, not handed out again.
    """
    pooled = db.engine.raw_connection()
    connection: psycopg.Connection[Any] = pooled.driver_connection  # type: ignore[assignment]
    connection.autocommit = True
    try:
        yield connection
    finally:
        if connection.broken:
            pooled.invalidate()
        else:
            connection.autocommit = False
        pooled.close()
