"""Where statements go: writes to the primary, read-only queries to the read engine.

The services take a `Database` and call `read()` or `write()`; when
`DATABASE_READ_URL` names a replica the read-only queries move there without
any change to them. While that replica is down, or further behind the primary
than `DATABASE_READ_MAX_LAG_SECONDS`, `read()` uses the primary instead (its
`ReplicaHealth`, kept per process by the runtime), so a broken replica costs
load on the primary, never errors or stale pages. The engines themselves are
made by Flask-SQLAlchemy in the application factory (or by any caller that has
engines of its own).

Reads serve web requests, so each gets a `statement_timeout`: a query that
would scan for minutes is cancelled (psycopg's `QueryCanceled`) and its
request answered, instead of holding a connection and a thread. Writes and
the calculation (`primary.connect()`) are not bound by it.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

_DRIVER_PREFIX = re.compile(r"^postgres(?:ql)?(?:\+\w+)?://")
# every session computes in UTC, whatever the server's default time zone
SESSION_OPTIONS = "-c timezone=UTC"


def libpq_url(url: str) -> str:
    """A SQLAlchemy-style PostgreSQL URL as libpq (psycopg) reads it."""
    return _DRIVER_PREFIX.sub("postgresql://", url)


@dataclass(frozen=True)
class ReplicaState:
    """What the last check found: whether reads may use the replica, how far behind it is, and why not."""

    usable: bool
    lag_seconds: float | None = None
    error: str | None = None


class ReplicaHealth(Protocol):
    """Whether reads may go to the replica now (`app.runtime.replica.ReplicaMonitor`)."""

    def state(self) -> ReplicaState: ...

    def mark_down(self, error: BaseException) -> None: ...


def quick_connection(url: str, timeout: float, application_name: str | None = None) -> psycopg.Connection[Any]:
    """A fresh autocommit connection whose connect and statements give up quickly (probes, checks, scrapes).

    libpq rounds connect timeouts below 2 s up to 2 s; callers that need a
    shorter bound run it under a deadline (see `/readyz`). A server that stops
    acknowledging what is sent (gone from the network) fails the statement
    after the timeout too (`tcp_user_timeout`), not after minutes.
    """
    milliseconds = max(1, int(timeout * 1000))
    named = {"application_name": application_name} if application_name else {}
    return psycopg.connect(libpq_url(url), autocommit=True, connect_timeout=max(2, math.ceil(timeout)),
                           tcp_user_timeout=milliseconds, options=f"-c statement_timeout={milliseconds}", **named)


@dataclass(frozen=True)
class Database:
    """The primary engine, and the engine that serves reads (the primary itself unless a replica is set)."""

    primary: Engine
    replica: Engine | None = None
    monitor: ReplicaHealth | None = None
    read_timeout_ms: int = 0  # 0: reads may take as long as they take

    @property
    def read_engine(self) -> Engine:
        if self.replica is None or (self.monitor is not None and not self.monitor.state().usable):
            return self.primary
        return self.replica

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A short read-only unit of work on the read engine (the primary when the replica cannot serve),
        each statement cancelled after `read_timeout_ms`."""
        engine = self.read_engine
        try:
            connection = engine.connect()
        except OperationalError as exc:
            if engine is self.primary or self.monitor is None:
                raise
            self.monitor.mark_down(exc)
            connection = self.primary.connect()
        with connection:
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


class Writer(Protocol):
    """Where the event write path takes its connection: `Database.write()`, or a connection of the group commit's
    own (`app.runtime.connections.DedicatedWriter`)."""

    def write(self) -> AbstractContextManager[psycopg.Connection[Any]]: ...
