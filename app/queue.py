"""Redis and the RQ queue of the app, bound to the app's configuration.

Keys live under `REDIS_NAMESPACE`, so several deployments (or a test run)
can share one Redis without touching each other's jobs.
"""
from __future__ import annotations

import logging
import signal
import time
import uuid
from collections.abc import Callable

from flask import Flask, current_app
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, Worker

log = logging.getLogger(__name__)

EXTENSION_KEY = "tracking.redis"
MAX_RECONNECT_PAUSE = 30.0


def init_app(app: Flask) -> None:
    """Create the Redis client lazily, once per process (it holds its own connection pool)."""
    app.extensions[EXTENSION_KEY] = None


def close(app: Flask) -> None:
    """Close the app's Redis connections (tests build many apps in one process)."""
    client = app.extensions.get(EXTENSION_KEY)
    if client is not None:
        client.close()
        app.extensions[EXTENSION_KEY] = None


def redis_connection() -> Redis:
    client = current_app.extensions.get(EXTENSION_KEY)
    if client is None:
        client = Redis.from_url(current_app.config["REDIS_URL"], socket_connect_timeout=2, socket_timeout=5,
                                health_check_interval=30)
        current_app.extensions[EXTENSION_KEY] = client
    return client


def namespaced(name: str) -> str:
    return f"{current_app.config['REDIS_NAMESPACE']}:{name}"


def delete_namespace(client: Redis, namespace: str) -> int:
    """Remove every key of one namespace (queues, jobs, schedule, rate limits) and nothing else.

    For throwaway deployments such as a test run or a soak; returns how many keys went.
    """
    keys = [*client.scan_iter(match=f"{namespace}*", count=1000),
            *client.scan_iter(match=f"rq:*{namespace}*", count=1000)]
    if keys:
        client.delete(*keys)
    for registry in ("rq:queues", "rq:workers"):
        members = [member for member in client.smembers(registry) if namespace.encode() in member]
        if members:
            client.srem(registry, *members)
    return len(keys)


def namespaced_id(name: str) -> str:
    """A job id under the namespace (RQ allows only letters, digits, `_` and `-`)."""
    return f"{current_app.config['REDIS_NAMESPACE']}-{name}"


def metrics_queue() -> Queue:
    return Queue(namespaced("metrics"), connection=redis_connection())


def keep_running(run: Callable[[], None], what: str) -> None:
    """Run `run` and start it again, with a growing pause, whenever Redis is unreachable.

    RQ's worker and rq-scheduler give up at the first lost connection in
    several places (start-up, heartbeats); a Redis restart must not take the
    worker or the scheduler down with it.
    """
    pause = 1.0
    while True:
        try:
            run()
            return
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("%s lost redis (%s); retrying in %.0fs", what, exc.__class__.__name__, pause)
            # RQ's own stop handlers talk to Redis; while it is away a stop just exits.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            time.sleep(pause)
            pause = min(pause * 2, MAX_RECONNECT_PAUSE)


def run_worker(burst: bool = False) -> None:
    """Consume the app's queues inside the current app context until told to stop.

    Jobs run in a forked work horse that inherits the app context; SIGTERM
    lets the current job finish before the worker exits.
    """
    def work() -> None:
        worker = Worker([metrics_queue()], connection=redis_connection(), name=namespaced_id(uuid.uuid4().hex))
        worker.work(burst=burst, with_scheduler=True, logging_level=current_app.config["LOG_LEVEL"].upper())

    keep_running(work, "worker")
