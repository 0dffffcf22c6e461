"""Where statements go: writes to the primary, list queries to the read engine.

The services take a `Database` and call `read()` or `write()`; when
`DATABASE_READ_URL` names a replica the list queries move there without any
change to them. The engines themselves are made by Flask-SQLAlchemy in the
application factory (or by any caller that has engines of its own).

Reads serve web requests, so each gets a `statement_timeout`: a query that
would scan for minutes is cancelled (psycopg's `QueryCanceled`) and its
request answered, instead of holding a connection and a thread. Writes and
the calculation (`primary.connect()`) are not bound by it.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine


@dataclass(frozen=True)
class Database:
    """The primary engine, and the engine that serves reads (the primary itself unless a replica is set)."""

    primary: Engine
    replica: Engine | None = None
    read_timeout_ms: int = 0  # 0: reads may take as long as they take

    @property
    def read_engine(self) -> Engine:
        return self.replica or self.primary

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A short read-only unit of work on the read engine, each statement cancelled after `read_timeout_ms`."""
        with self.read_engine.connect() as connection:
            if self.read_timeout_ms > 0:
                # LOCAL: it ends with this unit's transaction, so the pooled connection is left as it was.
                connection.exec_driver_sql(f"SET LOCAL statement_timeout = {int(self.read_timeout_ms)}")
            yield connection
            connection.rollback()

    @contextmanager
    def write(self) -> Iterator[psycopg.Connection[Any]]:
        """The primary's psycopg connection, from SQLAlchemy's pool, in autocommit mode.

        For the event write path: its statements are fixed SQL, so the driver runs
        them directly (prepared after a few runs on a connection) instead of through
        SQLAlchemy's execution layer, which costs more per call than the statement
        itself. Each statement commits on its own; `connection.transaction()` groups
        several. A connection the server dropped is discarded, not handed out again.
        """
        pooled = self.primary.raw_connection()
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
