"""Fixtures: a throwaway database on a real PostgreSQL and a namespace on a real Redis.

The servers are the ones named by DATABASE_URL / REDIS_URL when set (CI), or
embedded ones started here. The suite creates its own database and drops only
that one; in Redis it touches only keys under its own namespace.
"""
from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from flask_migrate import upgrade

from app import create_app, extensions
from app.dev.fixtures import borrowed_database, drop_namespace, throwaway_database
from app.extensions import db
from tests.helpers import WORKER, Clock, spawn, stop
from tests.openapi_check import ValidatingClient

TABLES = ("event_keys", "user_activity_metrics", "metrics_windows", "calculation_runs")


@dataclass(frozen=True)
class Servers:
    postgres_url: str
    redis_url: str
    # Where the embedded servers this session started keep their data (none when both were given).
    data_dirs: tuple[Path, ...] = ()


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    """The servers DATABASE_URL and REDIS_URL name, else embedded ones of this session's own.

    Those keep their data in directories of their own, not under pytest's base temp, which every other
    pytest session of the same user closes again (see app/dev/embedded.py); they stop, and their data
    goes, at the end of the session (Valkey first, as it was started last).
    """
    with ExitStack() as stack:
        started = []
        postgres_url = os.environ.get("DATABASE_URL")
        if not postgres_url:
            from app.dev.embedded import scratch_server, start_postgres
            started.append(stack.enter_context(scratch_server(start_postgres, "postgres")))
            postgres_url = started[-1].url
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            from app.dev.embedded import scratch_server, start_redis
            started.append(stack.enter_context(scratch_server(start_redis, "redis")))
            redis_url = started[-1].url
        yield Servers(postgres_url, redis_url, tuple(server.data_dir for server in started if server.data_dir))


@pytest.fixture(scope="session")
def database_url(servers: Servers) -> Iterator[str]:
    """A database of our own, migrated to head once per session, dropped at the end.

    `make mutate` runs a short session per mutant and lends them migrated databases
    (TRACKING_TEST_DATABASES) instead; tests empty the tables they use either way.
    """
    lent = os.environ.get("TRACKING_TEST_DATABASES")
    if lent:
        with borrowed_database(lent.split(",")) as url:
            if url is not None:
                yield url
                return
    with throwaway_database(servers.postgres_url, "tracking_test") as url:
        app = create_app({"DATABASE_URL": url})
        with app.app_context():
            upgrade()
        extensions.close(app)
        yield url


@pytest.fixture(scope="session")
def redis_namespace(servers: Servers) -> Iterator[str]:
    namespace = f"tracking-test-{uuid.uuid4().hex[:12]}"
    yield namespace
    drop_namespace(servers.redis_url, namespace)


@pytest.fixture
def app_config(database_url: str, servers: Servers, redis_namespace: str) -> dict[str, object]:
    """The settings every test app gets; a test may add to them before `app` is built."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": servers.redis_url,
        "REDIS_NAMESPACE": redis_namespace,
        "SECRET_KEY": "test-secret",
        "TESTING": True,
        # The suite's events carry fixed dates (2025-10-20, ...) that age past the default bound
        # as the calendar moves on; tests/test_request_bounds.py tests the bound at its default.
        "EVENT_MAX_AGE_DAYS": 100 * 365,
    }


@pytest.fixture
def clock() -> Clock:
    """A test that asks for this gets an app whose "now" is this clock, to move at will instead of sleeping."""
    return Clock(datetime(2025, 10, 23, 13, 7, tzinfo=timezone.utc))


@pytest.fixture
def app(app_config: dict[str, object], servers: Servers, redis_namespace: str,
        request: pytest.FixtureRequest) -> Iterator[Flask]:
    clocked = {"CLOCK": request.getfixturevalue("clock")} if "clock" in request.fixturenames else {}
    app = create_app({**app_config, **clocked})
    app.test_client_class = ValidatingClient
    with app.app_context():
        with db.engine.begin() as conn:
            for name in misshapen_partitions(conn):
                conn.execute(sa.text(f'DROP TABLE "{name}"'))
            conn.execute(sa.text(f"TRUNCATE {', '.join(TABLES + filled_partitions(conn))} RESTART IDENTITY"))
    drop_namespace(servers.redis_url, redis_namespace)
    yield app
    extensions.close(app)


_MISSHAPEN = """
SELECT c.relname
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
CROSS JOIN LATERAL (SELECT regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                        'FROM \\(''([^'']+)''\\) TO \\(''([^'']+)''\\)') AS m) AS b
CROSS JOIN LATERAL (SELECT b.m[1]::timestamptz AT TIME ZONE 'UTC' AS start,
                           b.m[2]::timestamptz AT TIME ZONE 'UTC' AS stop) AS bounds
WHERE i.inhparent = 'events'::regclass
  AND (i.inhdetachpending OR b.m IS NULL OR bounds.stop - bounds.start <> interval '1 day'
       OR date_trunc('day', bounds.start) <> bounds.start
       OR c.relname <> 'events_p' || to_char(bounds.start, 'YYYYMMDD'))
UNION ALL
SELECT relname FROM pg_class WHERE relkind = 'r' AND NOT relispartition AND relname ~ '^events_p[0-9]{8}$'
"""


def misshapen_partitions(conn: sa.Connection) -> list[str]:
    """Partitions of `events` that are not one UTC day named after it, left half-detached, or detached
    and not dropped.

    Only a mutant of the partition or retention code leaves them, and `make mutate` lends the same
    databases to every mutant's session: left there, they would overlap or take the names of the day
    partitions the next sessions make, or stand in the way of the next detach, and fail their tests
    for nothing.
    """
    return list(conn.execute(sa.text(_MISSHAPEN)).scalars())


def filled_partitions(conn: sa.Connection) -> tuple[str, ...]:
    """The partitions of `events` holding rows: truncating each partition costs a file
    operation, and tests leave hundreds of empty ones behind."""
    names = conn.execute(sa.text("SELECT inhrelid::regclass::text FROM pg_inherits "
                                 "WHERE inhparent = 'events'::regclass")).scalars().all()
    if not names:
        return ()
    probe = " UNION ALL ".join(f"(SELECT '{name}' FROM {name} LIMIT 1)" for name in names)
    return tuple(conn.execute(sa.text(probe)).scalars())


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that start a worker process, so `make mutate` can leave them out (they cost seconds each);
    run the tests marked `seconds` after the quick ones, so a mutant's `pytest -x` stops at a quick failure first."""
    for item in items:
        if "worker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.processes)
    items.sort(key=lambda item: item.get_closest_marker("seconds") is not None)  # stable: the rest keep their order


@pytest.fixture
def worker(app: Flask, app_config: dict[str, object], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real `python worker.py` process consuming this test's queue; its log is printed on failure."""
    log_path = tmp_path / "worker.log"
    process = spawn(WORKER, app_config, log_path)
    yield process
    stop(process, log_path)
