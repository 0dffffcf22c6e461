"""What the tests, the benchmark and the soak all need: free ports, throwaway databases, waiting.

A throwaway database is created under a fresh name on a given server and
dropped afterwards; nothing else on that server is touched.
"""
from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from sqlalchemy.engine import make_url

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that the kernel had free a moment ago (an ephemeral one, so
    several runs starting at once are unlikely to pick the same)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], T], timeout: float = 30.0, interval: float = 0.05,
               what: str = "condition") -> T:
    """Poll `condition` until it returns something truthy and return that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        time.sleep(interval)


def database_url(server_url: str, name: str) -> str:
    """A libpq URL for database `name` on the server of `server_url` (psycopg and SQLAlchemy accept it)."""
    return make_url(server_url).set(drivername="postgresql", database=name).render_as_string(hide_password=False)


@contextmanager
def throwaway_database(server_url: str, prefix: str) -> Iterator[str]:
    """Create a database named `<prefix>_<random>` on the server, yield its URL, and drop it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin_url = database_url(server_url, "postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(server_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def borrowed_database(urls: list[str]) -> Iterator[str | None]:
    """One of `urls` that no other process holds, held until the block ends; None when all are taken.

    `make mutate` lends a few migrated databases to the many short test sessions
    it runs, which would otherwise spend most of their time creating, migrating
    and dropping a database each. A session advisory lock marks the one in use.
    """
    for url in urls:
        conn = psycopg.connect(url, autocommit=True)
        if conn.execute("SELECT pg_try_advisory_lock(hashtext('tracking:borrowed-database'))").fetchone()[0]:
            try:
                yield url
            finally:
                conn.close()
            return
        conn.close()
    yield None


def drop_namespace(redis_url: str, namespace: str) -> None:
    """Delete one Redis namespace's keys (see `app.jobs.queue.delete_namespace`) with a client of its own."""
    import redis

    from ..jobs.queue import delete_namespace

    client: Any = redis.Redis.from_url(redis_url)
    try:
        delete_namespace(client, namespace)
    finally:
        client.close()
