"""Whether reads may go to the replica: checked at most every `interval` seconds per process.

The check opens connections of its own with short timeouts, so it never
waits behind the pools; the thread that finds the state out of date runs it,
and others go on with the state they have. A replica that is down, or
further behind the primary than the limit, sends reads to the primary.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg

from ..core.database import ReplicaState, quick_connection

# libpq's smallest connect timeout; a replica that does not answer within it counts as down
CHECK_CONNECT_TIMEOUT = 2

_PRIMARY_POSITION = "SELECT pg_current_wal_lsn()"
# Behind when it has not replayed what the primary had written before this query; then the
# lag is the age of the last transaction it did replay (under steady writes, a few ms).
_REPLICA_LAG = """
SELECT pg_is_in_recovery(),
       pg_last_wal_replay_lsn() >= %s::pg_lsn,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
"""


class ReplicaMonitor:
    """Decides, at most every `interval` seconds, whether reads may go to the replica (a `ReplicaHealth`)."""

    def __init__(self, primary_url: str, replica_url: str, max_lag: float, interval: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.primary_url = primary_url
        self.replica_url = replica_url
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
        with quick_connection(self.primary_url, CHECK_CONNECT_TIMEOUT) as primary:
            position = primary.execute(_PRIMARY_POSITION).fetchone()[0]  # type: ignore[index]
        with quick_connection(self.replica_url, CHECK_CONNECT_TIMEOUT) as replica:
            recovering, caught_up, age = replica.execute(_REPLICA_LAG, (position,)).fetchone()  # type: ignore[misc]
        if not recovering or caught_up:
            return ReplicaState(usable=True, lag_seconds=0.0)
        if age is None or age > self.max_lag:
            shown = "an unknown time" if age is None else f"{age:.1f} s"
            return ReplicaState(usable=False, lag_seconds=age,
                                error=f"{shown} behind the primary (limit {self.max_lag:g} s)")
        return ReplicaState(usable=True, lag_seconds=age)
