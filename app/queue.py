"""Redis and the RQ queue of the app, bound to the app's configuration.

Keys live under `REDIS_NAMESPACE`, so several deployments (or a test run)
can share one Redis without touching each other's jobs.
"""
from __future__ import annotations

import uuid

from flask import Flask, current_app
from redis import Redis
from rq import Queue, Worker

EXTENSION_KEY = "tracking.redis"


def init_app(app: Flask) -> None:
    """Create the Redis client lazily, once per process (it holds its own connection pool)."""
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


def namespaced_id(name: str) -> str:
    """A job id under the namespace (RQ allows only letters, digits, `_` and `-`)."""
    return f"{current_app.config['REDIS_NAMESPACE']}-{name}"


def metrics_queue() -> Queue:
    return Queue(namespaced("metrics"), connection=redis_connection())


def run_worker(burst: bool = False) -> None:
    """Consume the app's queues inside the current app context until told to stop.

    Jobs run in a forked work horse that inherits the app context; SIGTERM
    lets the current job finish before the worker exits.
    """
    worker = Worker([metrics_queue()], connection=redis_connection(), name=namespaced_id(uuid.uuid4().hex))
    worker.work(burst=burst, with_scheduler=True, logging_level=current_app.config["LOG_LEVEL"].upper())
