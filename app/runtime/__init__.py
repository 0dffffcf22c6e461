"""The runtime: everything one app keeps per process, with one lifecycle.

`create_app` builds one `Runtime` from the settings and the engines. Every
mechanism that outlives a request is one of its members, made on first use
in the process that uses it:

- `database`: the engines and, with a replica, its `replica_monitor`;
- `group_commit` and its `writer`, a connection of its own;
- the Redis clients, one per purpose (`redis_clients` says why each exists):
  `background_redis`, `request_redis` (only through `guarded_redis()`, behind
  `request_breaker`), `budget_redis` (under `exact_limiter`, behind
  `budget_breaker`, and for `budget_counts`) and `scrape_redis`;
- `budget_counts`, the busy budgets counted in the process;
- `observations`, the queue of Prometheus observations;
- `scrape_database`, the scrapes' PostgreSQL connection, and `probe_pool`,
  the threads `/readyz` checks on;
- `stream_slots`, how many exports are streaming, in total and per client.

One rule after `os.fork()` (`lifecycle`): the child's runtime forgets every
member its parent made, without closing it (those sockets and threads are
the parent's), and makes its own on first use; the pooled engines are
disposed the same way. One `close()` ends them all. The web server's master
and the workers it forks keep in touch through `heartbeats`, the one place
besides `lifecycle` that asks a process its pid; nothing else in `app/` checks
a pid or hooks a fork.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Generic, TypeVar, overload

from limits.storage import RedisStorage
from limits.strategies import FixedWindowRateLimiter
from redis import Redis
from sqlalchemy import Engine

from ..core.database import Database
from ..core.settings import Settings
from . import lifecycle, redis_clients
from .breaker import CircuitBreaker
from .budget_counts import BudgetCounts
from .connections import DedicatedWriter, ScrapeConnection
from .group_commit import GroupCommit
from .observations import Observations
from .redis_clients import REDIS_FAILURES, RedisSkipped
from .replica import ReplicaMonitor
from .slots import StreamSlots

__all__ = ["Runtime"]

T = TypeVar("T")

# How late a scrape may see another worker's Prometheus observations.
OBSERVATIONS_INTERVAL = 0.1
# A probe arrives every few seconds; four threads bound what hung checks can pile up.
PROBE_THREADS = 4


class per_process(Generic[T]):  # noqa: N801 (used as a decorator, like property)
    """A runtime member made on first use, once per process, and closed by `Runtime.close()` with `close`."""

    def __init__(self, make: Callable[[Any], T], close: Callable[[T], object] | None = None) -> None:
        self.make = make
        self.close = close
        self.__doc__ = make.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, runtime: None, owner: type) -> per_process[T]: ...

    @overload
    def __get__(self, runtime: Runtime, owner: type) -> T: ...

    def __get__(self, runtime: Runtime | None, owner: type) -> T | per_process[T]:
        if runtime is None:
            return self
        try:
            return runtime._made[self.name]  # type: ignore[no-any-return]
        except KeyError:
            with runtime._lock:
                if self.name not in runtime._made:
                    runtime._made[self.name] = self.make(runtime)
                return runtime._made[self.name]  # type: ignore[no-any-return]


def closed_by(close: Callable[[T], object]) -> Callable[[Callable[[Any], T]], per_process[T]]:
    """`per_process`, with what closes the member."""
    return lambda make: per_process(make, close)


class Runtime:
    """One app's per-process machinery (see the module docstring)."""

    def __init__(self, settings: Settings, primary: Engine, read: Engine | None = None) -> None:
        self.settings = settings
        self.primary = primary
        self.read = read
        self.engines = tuple(engine for engine in (primary, read) if engine is not None)
        self._lock = threading.RLock()
        self._made: dict[str, Any] = {}
        lifecycle.track(self)

    @per_process
    def replica_monitor(self) -> ReplicaMonitor | None:
        """Whether reads may go to the replica, when DATABASE_READ_URL names one."""
        config = self.settings
        if not (config.database_url and config.database_read_url):
            return None
        return ReplicaMonitor(config.database_url, config.database_read_url,
                              max_lag=config.database_read_max_lag_seconds,
                              interval=config.database_read_check_seconds)

    @per_process
    def database(self) -> Database:
        """Where statements go: the primary, and the replica while it may serve reads."""
        return Database(self.primary, self.read, self.replica_monitor,
                        read_timeout_ms=self.settings.database_read_timeout_ms)

    @closed_by(DedicatedWriter.close)
    def writer(self) -> DedicatedWriter:
        """The group commit's own connection: its groups go one at a time, so it needs no pool."""
        assert self.settings.database_url is not None  # Settings.check() refuses to start without it
        return DedicatedWriter(self.settings.database_url)

    @per_process
    def group_commit(self) -> GroupCommit:
        """The writer of single events: those that arrive together share one statement and one commit."""
        return GroupCommit(self.database, self.writer, window_size=self.settings.window_size,
                           max_rows=self.settings.group_commit_max_events)

    @closed_by(Redis.close)
    def background_redis(self) -> Redis:
        return redis_clients.background_client(self.settings)

    @closed_by(Redis.close)
    def request_redis(self) -> Redis:
        return redis_clients.request_client(self.settings)

    @closed_by(Redis.close)
    def budget_redis(self) -> Redis:
        return redis_clients.budget_client(self.settings)

    @closed_by(Redis.close)
    def scrape_redis(self) -> Redis:
        return redis_clients.scrape_client(self.settings)

    @per_process
    def request_breaker(self) -> CircuitBreaker:
        """Stops web requests asking a Redis that failed moments ago; shared by the job endpoints and the pages."""
        return CircuitBreaker("redis", reset_seconds=self.settings.redis_breaker_seconds, open_error=RedisSkipped)

    @per_process
    def budget_breaker(self) -> CircuitBreaker:
        """The exact budgets' own breaker: their tighter timeout may fire when the machine is merely busy, which
        may refuse sign-ins and recalculations for a moment but must not refuse the job endpoints too."""
        return CircuitBreaker("rate limits' Redis", reset_seconds=self.settings.redis_breaker_seconds)

    @per_process
    def exact_limiter(self) -> FixedWindowRateLimiter:
        """The budgets counted in Redis on every request (sign-ins, Recalculate), on the budget client's pool."""
        storage = RedisStorage(self.settings.redis_url, connection_pool=self.budget_redis.connection_pool,
                               key_prefix=f"{self.settings.redis_namespace}:ratelimit")
        return FixedWindowRateLimiter(storage)

    @closed_by(BudgetCounts.close)
    def budget_counts(self) -> BudgetCounts:
        """The busy budgets (ingestion, reads), counted in the process and shared through Redis in the background."""
        config = self.settings
        return BudgetCounts(self.budget_redis, prefix=f"{config.redis_namespace}:ratelimit:local",
                            interval=config.rate_limit_sync_ms / 1000, pause_after_failure=config.redis_breaker_seconds)

    @closed_by(Observations.close)
    def observations(self) -> Observations:
        return Observations(interval=OBSERVATIONS_INTERVAL)

    @closed_by(ScrapeConnection.close)
    def scrape_database(self) -> ScrapeConnection:
        assert self.settings.database_url is not None  # Settings.check() refuses to start without it
        return ScrapeConnection(self.settings.database_url, self.settings.prometheus_scrape_timeout_seconds,
                                redis_clients.SCRAPE_CLIENT_NAME)

    @closed_by(lambda pool: pool.shutdown(wait=False, cancel_futures=True))
    def probe_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=PROBE_THREADS, thread_name_prefix="readyz")

    @per_process
    def stream_slots(self) -> StreamSlots:
        return StreamSlots()

    @contextmanager
    def guarded_redis(self) -> Iterator[Redis]:
        """The web requests' Redis client, behind the request breaker.

        Raises `RedisSkipped` at once while the breaker is open; a connection
        error or timeout inside the block counts towards opening it.
        """
        with self.request_breaker.guard(REDIS_FAILURES):
            yield self.request_redis

    def after_fork(self) -> None:
        """In a forked child: forget the parent's members, unclosed, and let the pools open their own connections."""
        self._lock = threading.RLock()
        self._made = {}
        for engine in self.engines:
            engine.dispose(close=False)

    def at_exit(self) -> None:
        """At a normal exit: the last queued observations are counted."""
        observations = self._made.get("observations")
        if observations is not None:
            observations.apply()

    def close(self) -> None:
        """Close every member this process made, the newest first, then the engines' pools."""
        with self._lock:
            made, self._made = self._made, {}
        for name, member in reversed(made.items()):
            close = getattr(type(self), name).close
            if close is not None:
                close(member)
        for engine in self.engines:
            engine.dispose()
