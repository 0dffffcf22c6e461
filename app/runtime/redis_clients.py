"""The Redis clients of a process, one per purpose, each with the timeouts its callers can afford.

Each purpose has its own client (and connection pool) because their failures
cost differently: a worker may wait seconds for Redis, a web request a
fraction of a second, a budget check a few milliseconds.
"""
from __future__ import annotations

import re

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from ..core.settings import Settings

# What says Redis is down or hanging, as opposed to answering with an error.
REDIS_FAILURES = (RedisConnectionError, RedisTimeoutError)
# How the scrape client introduces itself (CLIENT LIST).
SCRAPE_CLIENT_NAME = "tracking-scrape"


class RedisSkipped(RedisConnectionError):
    """Raised instead of a Redis call while a breaker is open; handled like Redis being down."""


def _no_retries() -> Retry:
    return Retry(NoBackoff(), 0)


def background_client(settings: Settings) -> Redis:
    """For the worker, the scheduler and the CLI, which answer nobody and may wait: they keep their connection
    checked (`health_check_interval`) and reconnect rather than fail."""
    return Redis.from_url(settings.redis_url, socket_connect_timeout=settings.redis_connect_timeout_seconds,
                          socket_timeout=settings.redis_socket_timeout_seconds, health_check_interval=30)


def request_client(settings: Settings) -> Redis:
    """For web requests that need Redis to answer (job endpoints, sign-ins, the schedule on the dashboard): a
    request waits REDIS_REQUEST_TIMEOUT_SECONDS at most, with no retries, and only behind the request breaker."""
    timeout = settings.redis_request_timeout_seconds
    return Redis.from_url(settings.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout,
                          retry=_no_retries())


def budget_client(settings: Settings) -> Redis:
    """For the rate limits: the exact budgets' checks and the sharing of the counted ones. A check waits
    RATE_LIMIT_REDIS_TIMEOUT_SECONDS at most and is never retried: an unchecked budget refuses at once rather
    than hold a request."""
    timeout = settings.rate_limit_redis_timeout_seconds
    return Redis.from_url(settings.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout,
                          retry=_no_retries())


def scrape_client(settings: Settings) -> Redis:
    """For Prometheus scrapes (queue depth): PROMETHEUS_SCRAPE_TIMEOUT_SECONDS at most, and named, so an operator
    can tell its connection apart in CLIENT LIST."""
    timeout = settings.prometheus_scrape_timeout_seconds
    name = f"{SCRAPE_CLIENT_NAME}:{re.sub(r'[^A-Za-z0-9_.:-]', '_', settings.redis_namespace)}"  # CLIENT SETNAME's rules
    return Redis.from_url(settings.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout, client_name=name)
