"""Where statements go: writes to the primary, read-only queries to the read engine.

The services take a `Database` and call `read()` or `write()`; when
`DATABASE_READ_URL` names a replica the read-only queries move there without
any change to them. While that replica is down, or further behind the primary
than `DATABASE_READ_MAX_LAG_SECONDS`, `read()` uses the primary instead
(`ReplicaMonitor`), so a broken replica costs load on the primary, never
errors or stale pages. The engines themselves are made by Flask-SQLAlchemy in
the application factory (or by any caller that has engines of its own).

Reads serve web requests, so each gets a `statement_timeout`: a query that
would scan for minutes is cancelled (psycopg's `QueryCanceled`) and its
request answered, instead of holding a connection and a thread. Writes and
the calculation (`primary.connect()`) are not bound by it.
"""
from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError

_DRIVER_PREFIX = re.compile(r"^postgres(?:ql)?(?:\+\w+)?://")
# every session computes in UTC, whatever the server's default time zone
SESSION_OPTIONS = "-c timezone=UTC"
# libpq's smallest connect timeout; a replica that does not answer within it counts as down
CHECK_CONNECT_TIMEOUT = 2


def libpq_url(url: str) -> str:
    """A SQLAlchemy-style PostgreSQL URL as libpq (psycopg) reads it."""
    return _DRIVER_PREFIX.sub("postgresql://", url)


@dataclass(frozen=True)
class ReplicaState:
    """What the last check found: whether reads may use the replica, how far behind it is, and why not."""

    usable: bool
    lag_seconds: float | None = None
    error: str | None = None


_PRIMARY_POSITION = "SELECT pg_current_wal_lsn()"
# Behind when it has not replayed what the primary had written before this query; then the
# lag is the age of the last transaction it did replay (under steady writes, a few ms).
_REPLICA_LAG = """
SELECT pg_is_in_recovery(),
       pg_last_wal_replay_lsn() >= %s::pg_lsn,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
"""


def _check_connection(url: str) -> psycopg.Connection[Any]:
    """A connection of the check's own, on either server: a server that does not answer, or a statement
    that does not finish, within CHECK_CONNECT_TIMEOUT counts as down rather than holding the check."""
    return psycopg.connect(url, autocommit=True, connect_timeout=CHECK_CONNECT_TIMEOUT,
                           options=f"-c statement_timeout={CHECK_CONNECT_TIMEOUT * 1000}")


class ReplicaMonitor:
    """Decides, at most every `interval` seconds per process, whether reads may go to the replica.

    The check opens connections of its own with short timeouts, so it never
    waits behind the pools; the thread that finds the state out of date runs
    it, and others go on with the state they have.
    """

    def __init__(self, primary_url: str, replica_url: str, max_lag: float, interval: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.primary_url = libpq_url(primary_url)
        self.replica_url = libpq_url(replica_url)
        self.max_lag = max_lag
        self.interval = interval
        self.clock = clock  # injectable, so tests can stand at the interval's exact end
        self._state = ReplicaState(usable=True)
        self._checked = float("-inf")
        self._lock = threading.Lock()

    def state(self) -> ReplicaState:
        """The current verdict, checked again first when it is older than `interval`."""
        if self.clock() - self._checked >= self.interval and self._lock.acquire(blocking=False):
            try:
                self._check()
            finally:
                self._lock.release()
        return self._state

    def check(self) -> ReplicaState:
        """Check now (for /readyz and Prometheus), whatever the age of the last check."""
        with self._lock:
            return self._check()

    def mark_down(self, error: BaseException) -> None:
        """A read could not reach the replica: use the primary until the next check says otherwise."""
        self._state = ReplicaState(usable=False, error=type(error).__name__)
        self._checked = self.clock()

    def _check(self) -> ReplicaState:
        try:
            self._state = self._measure()
        except (psycopg.Error, OSError) as exc:
            self._state = ReplicaState(usable=False, error=type(exc).__name__)
        self._checked = self.clock()
        return self._state

    def _measure(self) -> ReplicaState:
        with _check_connection(self.primary_url) as primary:
            position = primary.execute(_PRIMARY_POSITION).fetchone()[0]  # type: ignore[index]
        with _check_connection(self.replica_url) as replica:
            recovering, caught_up, age = replica.execute(_REPLICA_LAG, (position,)).fetchone()  # type: ignore[misc]
        if not recovering or caught_up:
            return ReplicaState(usable=True, lag_seconds=0.0)
        if age is None or age > self.max_lag:
            shown = "an unknown time" if age is None else f"{age:.1f} s"
            return ReplicaState(usable=False, lag_seconds=age,
                                error=f"{shown} behind the primary (limit {self.max_lag:g} s)")
        return ReplicaState(usable=True, lag_seconds=age)


@dataclass(frozen=True)
class Database:
    """The primary engine, and the engine that serves reads (the primary itself unless a replica is set)."""

    primary: Engine
    replica: Engine | None = None
    monitor: ReplicaMonitor | None = None
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
    """Where the event write path takes its connection: `Database.write()`, or a `DedicatedWriter`."""

    def write(self) -> AbstractContextManager[psycopg.Connection[Any]]: ...


class DedicatedWriter:
    """One psycopg connection in autocommit mode, for a writer that runs one call at a time (a process's
    group commit): no pool checkout, autocommit switch or reset on return per call, which cost a single
    event's request more than its insert's parameters. Opened on first use, in the process that uses it;
    one the server dropped fails the call that finds it, as a pooled one would, and is replaced at the next.

    Since every single event of the process waits on it, it does not wait on a silent network for long:
    connecting gives up after `CONNECT_TIMEOUT` s and unacknowledged data after `NETWORK_TIMEOUT` s (TCP
    keepalives probe it while idle), and it is replaced after `RECYCLE_SECONDS`, like the pooled ones.
    """

    CONNECT_TIMEOUT = 5
    NETWORK_TIMEOUT = 30
    RECYCLE_SECONDS = 1800

    def __init__(self, url: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = libpq_url(url)
        self.clock = clock
        self._connection: psycopg.Connection[Any] | None = None
        self._opened_at = 0.0

    @contextmanager
    def write(self) -> Iterator[psycopg.Connection[Any]]:
        connection = self._connection
        if connection is not None and self.clock() - self._opened_at >= self.RECYCLE_SECONDS:
            self.close()
            connection = None
        if connection is None or connection.closed:  # closed: by us, or by the server (broken)
            connection = self._connection = psycopg.connect(
                self.url, autocommit=True, options=SESSION_OPTIONS, connect_timeout=self.CONNECT_TIMEOUT,
                keepalives=1, keepalives_idle=self.NETWORK_TIMEOUT, keepalives_interval=5, keepalives_count=3,
                tcp_user_timeout=self.NETWORK_TIMEOUT * 1000)
            self._opened_at = self.clock()
        yield connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

