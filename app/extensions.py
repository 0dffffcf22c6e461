"""The Flask extension objects, and the per-app objects every adapter takes its dependencies from.

`create_app` builds one `Settings`, one `Database` and (lazily, once per
process) two Redis clients per app and keeps them in `app.extensions`; routes,
CLI commands and jobs read them through the accessors below and hand them to
the services and job functions explicitly. `now()` is the one clock the
adapters stamp requests and runs with, so tests can move time instead of waiting.

Web requests reach Redis through `guarded_redis()`: a client with short
timeouts and no retries, behind the app's Redis circuit breaker, so a Redis
that hangs costs a request at most a fraction of a second, and after a few
failures nothing at all until the breaker lets a trial call through. (The
rate limiter has a client and a breaker of its own, `app.http.rate_limits`.)
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from contextlib import contextmanager
from typing import Any

from flask import Flask, current_app
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from .core.breaker import CircuitBreaker
from .core.database import Database, DedicatedWriter, ReplicaMonitor
from .core.settings import Settings
from .core.tables import metadata
from .core.times import utcnow
from .services.group_commit import GroupCommit

db = SQLAlchemy(metadata=metadata)
migrate = Migrate()

SETTINGS_KEY = "tracking.settings"
DATABASE_KEY = "tracking.database"
REDIS_KEY = "tracking.redis"
REQUEST_REDIS_KEY = "tracking.request_redis"
REDIS_BREAKER_KEY = "tracking.redis_breaker"
CLOSERS_KEY = "tracking.closers"
RATE_LIMITS_KEY = "tracking.rate_limits"
GROUP_COMMIT_KEY = "tracking.group_commit"
GROUP_COMMIT_LOCK = threading.Lock()
# What says Redis is down or hanging, as opposed to answering with an error.
REDIS_FAILURES = (RedisConnectionError, RedisTimeoutError)


class RedisSkipped(RedisConnectionError):
    """Raised instead of a Redis call while the breaker is open; handled like Redis being down."""


def init_app(app: Flask, settings: Settings) -> None:
    """Bind the settings, the database engines, the Redis breaker and lazily made Redis clients to `app`."""
    app.extensions[SETTINGS_KEY] = settings
    db.init_app(app)
    monitor = None
    if settings.database_url and settings.database_read_url:
        monitor = ReplicaMonitor(settings.database_url, settings.database_read_url,
                                 max_lag=settings.database_read_max_lag_seconds,
                                 interval=settings.database_read_check_seconds)
    with app.app_context():
        app.extensions[DATABASE_KEY] = Database(db.engine, db.engines.get("read"), monitor,
                                                read_timeout_ms=settings.database_read_timeout_ms)
    app.extensions[REDIS_KEY] = None
    app.extensions[REQUEST_REDIS_KEY] = None
    app.extensions[REDIS_BREAKER_KEY] = CircuitBreaker("redis", reset_seconds=settings.redis_breaker_seconds,
                                                       open_error=RedisSkipped)
    app.extensions.setdefault(CLOSERS_KEY, [])


def settings() -> Settings:
    return current_app.extensions[SETTINGS_KEY]


def database() -> Database:
    return current_app.extensions[DATABASE_KEY]


def group_commit() -> GroupCommit:
    """This process's writer of single events (made on first use, after any fork)."""
    committer = current_app.extensions.get(GROUP_COMMIT_KEY)
    if committer is None:
        config = settings()
        with GROUP_COMMIT_LOCK:  # two first requests: one group commit, one connection
            committer = current_app.extensions.get(GROUP_COMMIT_KEY)
            if committer is None:
                assert config.database_url is not None  # Settings.check() refuses to start without it
                own = DedicatedWriter(config.database_url)
                committer = GroupCommit(database(), own, window_size=config.window_size,
                                        max_rows=config.group_commit_max_events)
                on_close(current_app, own.close)
                current_app.extensions[GROUP_COMMIT_KEY] = committer
    return committer


def now() -> datetime:
    """The current time: `utcnow()`, unless a test built the app with a `CLOCK` callable in its config."""
    clock = current_app.config.get("CLOCK")
    return clock() if clock is not None else utcnow()


def redis_client() -> Redis:
    """The Redis client of the worker, the scheduler and the CLI, made on first use in this process.

    Its timeouts suit background work; web requests use `guarded_redis()`.
    """
    client = current_app.extensions.get(REDIS_KEY)
    if client is None:
        config = settings()
        client = Redis.from_url(config.redis_url, socket_connect_timeout=config.redis_connect_timeout_seconds,
                                socket_timeout=config.redis_socket_timeout_seconds, health_check_interval=30)
        current_app.extensions[REDIS_KEY] = client
    return client


def redis_breaker() -> CircuitBreaker:
    """The app's Redis circuit breaker, shared by the job endpoints and dashboard reads of this process."""
    return current_app.extensions[REDIS_BREAKER_KEY]


@contextmanager
def guarded_redis() -> Iterator[Redis]:
    """The web requests' Redis client, behind the breaker.

    Raises `RedisSkipped` at once while the breaker is open; a connection
    error or timeout inside the block counts towards opening it.
    """
    with redis_breaker().guard(REDIS_FAILURES):
        client = current_app.extensions.get(REQUEST_REDIS_KEY)
        if client is None:
            config = settings()
            timeout = config.redis_request_timeout_seconds
            client = Redis.from_url(config.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout,
                                    retry=Retry(NoBackoff(), 0))
            current_app.extensions[REQUEST_REDIS_KEY] = client
        yield client


def on_close(app: Flask, close_resource: Callable[[], Any]) -> None:
    """Have `close(app)` call `close_resource` too (for connections an adapter keeps per app)."""
    app.extensions.setdefault(CLOSERS_KEY, []).append(close_resource)


def close(app: Flask) -> None:
    """Close the app's connections (tests and tools build many apps in one process)."""
    for key in (REDIS_KEY, REQUEST_REDIS_KEY):
        client = app.extensions.get(key)
        if client is not None:
            client.close()
            app.extensions[key] = None
    for close_resource in app.extensions.get(CLOSERS_KEY, []):
        close_resource()
    limits = app.extensions.pop(RATE_LIMITS_KEY, None)
    if limits is not None:
        limits.close()
    with app.app_context():
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()
