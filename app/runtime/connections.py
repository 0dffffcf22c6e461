"""PostgreSQL connections a process keeps of its own, outside the pools: the group commit's and the scrapes'."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from ..core.database import SESSION_OPTIONS, libpq_url, quick_connection


class DedicatedWriter:
    """One psycopg connection in autocommit mode, for a writer that runs one call at a time (a process's
    group commit): no pool checkout, autocommit switch or reset on return per call. Opened on first use;
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


class ScrapeConnection:
    """The one autocommit connection a process keeps for its Prometheus scrapes, rather than one per scrape.

    A scrape that finds it cut (a database restart since the last one) tries once more on a fresh
    connection; a scrape that cannot have it within the timeout (another scrape stuck on a hung server)
    fails at once rather than queueing behind it.
    """

    def __init__(self, url: str, timeout: float, application_name: str) -> None:
        self.url = url
        self.timeout = timeout
        self.application_name = application_name
        self._lock = threading.Lock()
        self._connection: psycopg.Connection[Any] | None = None

    def rows(self, statement: str) -> list[tuple[Any, ...]]:
        """The rows of `statement`; raises when the database cannot answer within the timeout."""
        if not self._lock.acquire(timeout=self.timeout):
            raise TimeoutError("the previous scrape still waits for PostgreSQL")
        try:
            reused = self._connection is not None
            try:
                return self._rows(statement)
            except psycopg.OperationalError:
                self._close()
                if not reused:
                    raise  # a fresh connection failed: the database is down
                return self._rows(statement)
        except BaseException:
            self._close()
            raise
        finally:
            self._lock.release()

    def _rows(self, statement: str) -> list[tuple[Any, ...]]:
        if self._connection is None or self._connection.closed:
            self._connection = quick_connection(self.url, self.timeout, self.application_name)
        return self._connection.execute(statement).fetchall()

    def close(self) -> None:
        self._close()

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
