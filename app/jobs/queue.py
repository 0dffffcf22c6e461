"""The RQ queue and its Redis keys, all under the deployment's `REDIS_NAMESPACE`.

Several deployments (or a test run) can share one Redis without touching each
other's jobs. Plain functions of a Redis client and a namespace: the web
process, the worker and the scheduler each pass their own.
"""
from __future__ import annotations

import logging
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, Worker
from rq.timeouts import JobTimeoutException, UnixSignalDeathPenalty

from ..runtime.lifecycle import forks_die_with_their_parent

log = logging.getLogger(__name__)

MAX_RECONNECT_PAUSE = 30.0
# The queue's name in Redis ("<namespace>:metrics"); kept as it was so queued jobs survive an upgrade.
CALCULATION_QUEUE = "metrics"


def namespaced(namespace: str, name: str) -> str:
    """A Redis key under the namespace."""
    return f"{namespace}:{name}"


def namespaced_id(namespace: str, name: str) -> str:
    """A job id under the namespace (RQ allows only letters, digits, `_` and `-`)."""
    return f"{namespace}-{name}"


def calculation_queue(redis: Redis, namespace: str) -> Queue:
    return Queue(namespaced(namespace, CALCULATION_QUEUE), connection=redis)


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


class JobTimeout(JobTimeoutException, KeyboardInterrupt):
    """RQ's job timeout, raised as an interruption so that the statement in flight stops too.

    Interrupted by anything else, psycopg would leave the statement running on
    the server and the connection busy: the calculation could then neither
    record its failure nor release its lock, and the job's error would be a
    driver message.
    On a KeyboardInterrupt psycopg cancels the statement and waits for it, as
    on Ctrl-C; being a JobTimeoutException too, RQ handles it as a timeout.
    """


class CancellingDeathPenalty(UnixSignalDeathPenalty):
    """RQ's SIGALRM job timeout, raising `JobTimeout`."""

    def __init__(self, timeout: Any, exception: type[BaseException] = JobTimeoutException, **kwargs: Any) -> None:
        super().__init__(timeout, JobTimeout if exception is JobTimeoutException else exception, **kwargs)


class AppWorker(Worker):
    """RQ's worker with job timeouts that cancel the database statement in flight."""

    death_penalty_class = CancellingDeathPenalty


def run_worker(redis: Redis, namespace: str, *, log_level: str, burst: bool = False) -> None:
    """Consume the namespace's queues until told to stop (`worker.py` calls this inside an app context).

    Jobs run in a forked work horse that inherits the app context; SIGTERM
    lets the current job finish before the worker exits. The horse (in a
    process group of its own) and RQ's scheduler process die with the worker
    if it is killed outright, instead of running on unwatched; while
    the worker lives, RQ stops a job at its timeout (SIGALRM in the horse,
    see `JobTimeout`; the worker kills a horse still there a minute later).
    """
    forks_die_with_their_parent()

    def work() -> None:
        worker = AppWorker([calculation_queue(redis, namespace)], connection=redis,
                           name=namespaced_id(namespace, uuid.uuid4().hex))
        worker.work(burst=burst, with_scheduler=True, logging_level=log_level.upper())

    keep_running(work, "worker")
