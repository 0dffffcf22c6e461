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
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from flask_migrate import upgrade
from sqlalchemy.engine import make_url

from app import create_app, queue
from app.extensions import db
from app.queue import delete_namespace
from tests.helpers import WORKER, spawn, stop
from tests.openapi_check import ValidatingClient

TABLES = ("events", "user_activity_metrics", "metrics_windows", "calculation_runs")


@dataclass(frozen=True)
class Servers:
    postgres_url: str
    redis_url: str


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    postgres_url = os.environ.get("DATABASE_URL")
    redis_url = os.environ.get("REDIS_URL")
    started = []
    if not postgres_url:
        from app.embedded import start_postgres
        server = start_postgres(tmp_path_factory.mktemp("postgres"))
        started.append(server)
        postgres_url = server.url
    if not redis_url:
        from app.embedded import start_redis
        server = start_redis(tmp_path_factory.mktemp("redis"))
        started.append(server)
        redis_url = server.url
    yield Servers(postgres_url, redis_url)
    for server in reversed(started):
        server.stop()


def _libpq_url(url: sa.URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def database_url(servers: Servers) -> Iterator[str]:
    """A database of our own, migrated to head once per session, dropped at the end."""
    server_url = make_url(servers.postgres_url)
    name = f"tracking_test_{uuid.uuid4().hex[:12]}"
    admin_url = _libpq_url(server_url.set(database="postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _libpq_url(server_url.set(database=name))
    app = create_app({"DATABASE_URL": url})
    with app.app_context():
        upgrade()
        db.engine.dispose()
    yield url
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_namespace(servers: Servers) -> Iterator[str]:
    namespace = f"tracking-test-{uuid.uuid4().hex[:12]}"
    yield namespace
    _delete_namespace(servers.redis_url, namespace)


def _delete_namespace(redis_url: str, namespace: str) -> None:
    client = redis.Redis.from_url(redis_url)
    delete_namespace(client, namespace)
    client.close()


@pytest.fixture
def app_config(database_url: str, servers: Servers, redis_namespace: str) -> dict[str, object]:
    """The settings every test app gets; a test may add to them before `app` is built."""
    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": servers.redis_url,
        "REDIS_NAMESPACE": redis_namespace,
        "SECRET_KEY": "test-secret",
        "TESTING": True,
    }


@pytest.fixture
def app(app_config: dict[str, object], servers: Servers, redis_namespace: str) -> Iterator[Flask]:
    app = create_app(app_config)
    app.test_client_class = ValidatingClient
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(sa.text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY"))
    _delete_namespace(servers.redis_url, redis_namespace)
    yield app
    with app.app_context():
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()
    queue.close(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def worker(app: Flask, app_config: dict[str, object], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real `python worker.py` process consuming this test's queue; its log is printed on failure."""
    log_path = tmp_path / "worker.log"
    process = spawn(WORKER, app_config, log_path)
    yield process
    stop(process, log_path)
