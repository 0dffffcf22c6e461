"""Faults survived: PostgreSQL or Redis going away, a worker killed mid-run, racing retries.

Each test runs the servers it breaks itself (embedded PostgreSQL / Valkey),
so the machine's shared servers are never stopped.
"""
from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import psutil
import pytest
import redis
import sqlalchemy as sa
from flask_migrate import upgrade

from app.dev.embedded import start_postgres, start_redis
from app.extensions import db
from app.extensions import database, now, runtime, settings
from app.jobs.schedule import make_scheduler
from app.jobs.tasks import calculation_settings
from app.services.calculation import calculate_metrics
from tests.helpers import (SCHEDULER, WORKER, count_rows, make_partitions, post_event, separate_app, spawn, stop,
                           wait_until)

UTC = timezone.utc
DAY0 = datetime(2025, 6, 1, tzinfo=UTC)


@pytest.fixture
def own_postgres(tmp_path_factory):
    """A PostgreSQL of this test's own, which it may stop and start."""
    data_dir = tmp_path_factory.mktemp("pg")
    servers = [start_postgres(data_dir)]
    yield data_dir, servers
    servers[-1].stop()


def test_database_outage_answers_503_with_retry_after_and_recovers_without_losing_events(own_postgres, app_config):
    data_dir, servers = own_postgres
    with separate_app({**app_config, "DATABASE_URL": servers[0].url}) as app:
        with app.app_context():
            upgrade()
        _survive_database_outage(app.test_client(), data_dir, servers)


def _survive_database_outage(client, data_dir, servers) -> None:
    acknowledged = [post_event(client, user_id=7).get_json()["id"] for _ in range(5)]

    servers[0].stop()
    down = post_event(client, user_id=7)
    assert down.status_code == 503
    assert down.headers["Retry-After"].isdigit()
    error = down.get_json()["error"]
    assert error["code"] == "database_unavailable"
    assert error["retry_after"] == int(down.headers["Retry-After"])
    assert "Traceback" not in down.get_data(as_text=True)
    assert client.get("/api/events?user_id=7").status_code == 503

    servers.append(start_postgres(data_dir))
    assert servers[-1].url == servers[0].url
    back = wait_until(lambda: (r := post_event(client, user_id=7)).status_code == 201 and r)
    acknowledged.append(back.get_json()["id"])
    listed = [e["id"] for e in client.get("/api/events?user_id=7").get_json()["events"]]
    assert sorted(listed) == sorted(acknowledged)


def test_redis_outage_keeps_ingestion_and_queries_and_the_worker_and_scheduler_reconnect(app, app_config, tmp_path):
    # `app` empties the tables first: the calculation below must count only this test's event.
    data_dir = tmp_path / "valkey"
    own = start_redis(data_dir)
    port = int(own.url.rsplit(":", 1)[1].split("/")[0])
    config = {**app_config, "REDIS_URL": own.url}
    with separate_app(config) as app:
        _survive_redis_outage(app, config, own, port, tmp_path)


def _survive_redis_outage(app, config, own, port, tmp_path) -> None:
    client = app.test_client()
    worker_log, scheduler_log = tmp_path / "worker.log", tmp_path / "scheduler.log"
    worker = spawn(WORKER, config, worker_log)
    scheduler = spawn(SCHEDULER, config, scheduler_log)
    try:
        with app.app_context():
            wait_until(lambda: list(make_scheduler(runtime().background_redis, settings()).get_jobs()))
        wait_until(lambda: "Listening on" in worker_log.read_text())
        own.stop()
        assert post_event(client, user_id=9, occurred_at=DAY0.isoformat()).status_code == 201
        assert client.get("/api/events?user_id=9").status_code == 200
        refused = client.post("/api/metrics")
        assert refused.status_code == 503
        assert refused.get_json()["error"]["code"] == "budget_unchecked"  # its exact budget needs Redis too
        assert "Retry-After" in refused.headers

        wait_until(lambda: "scheduler lost redis" in scheduler_log.read_text(), timeout=15)
        assert worker.poll() is None and scheduler.poll() is None
        # Back on the same port, but empty: the scheduler must register its job again.
        own = start_redis(tmp_path / "valkey-again", port=port)
        with app.app_context():
            wait_until(lambda: list(make_scheduler(runtime().background_redis, settings()).get_jobs()), timeout=30)
        # The web process's Redis breaker lets a trial through within REDIS_BREAKER_SECONDS.
        job = wait_until(lambda: (r := client.post("/api/metrics")).status_code == 202 and r, timeout=15,
                         interval=0.2).get_json()["job"]
        finished = wait_until(lambda: (j := client.get(job["url"]).get_json()["job"])["status"] == "finished" and j,
                              timeout=60)
        assert finished["summary"]["users"] == 1
    finally:
        stop(worker, worker_log)
        stop(scheduler, scheduler_log)
        own.stop()


FRESH_COUNT_DIFFERENCES = sa.text("""
WITH fresh AS (
    SELECT user_id, date_bin('4 hours', occurred_at, '1970-01-01 00:00+00') AS window_start, count(*) AS n
    FROM events GROUP BY 1, 2
), done AS (
    SELECT window_start FROM metrics_windows WHERE computed_at IS NOT NULL AND NOT stale
), expected AS (
    SELECT user_id, window_start, n FROM fresh WHERE window_start IN (SELECT window_start FROM done)
), actual AS (
    SELECT user_id, window_start, event_count FROM user_activity_metrics
)
SELECT (SELECT count(*) FROM (SELECT * FROM expected EXCEPT SELECT * FROM actual) missing)
     + (SELECT count(*) FROM (SELECT * FROM actual EXCEPT SELECT * FROM expected) extra)
""")


def test_worker_killed_mid_calculation_leaves_no_partial_window(app, app_config, tmp_path):
    make_partitions(app, DAY0, DAY0 + timedelta(seconds=15 * 600_000))
    with app.app_context():
        db.session.execute(sa.text("""
            INSERT INTO events (id, user_id, action, metadata, occurred_at)
            SELECT gen_random_uuid(), 1 + i % 50, 'a' || i % 4, '{}', :day0 + i * interval '15 seconds'
            FROM generate_series(0, 599999) AS i
        """), {"day0": DAY0})
        db.session.commit()
    config = {**app_config, "METRICS_CHUNK_WINDOWS": 1}
    log_path = tmp_path / "worker.log"
    worker = spawn(WORKER, config, log_path)
    try:
        client = app.test_client()
        client.post("/api/metrics")

        def computed() -> int:
            with app.app_context():
                return db.session.execute(sa.text(
                    "SELECT count(*) FROM metrics_windows WHERE computed_at IS NOT NULL")).scalar_one()

        wait_until(lambda: computed() >= 5, timeout=60, interval=0.01)
        # The whole worker dies at once, the work horse it forked (its own process group) included.
        for process in [*psutil.Process(worker.pid).children(recursive=True), psutil.Process(worker.pid)]:
            process.kill()
        worker.wait()
        partial = computed()
        with app.app_context():
            assert db.session.execute(FRESH_COUNT_DIFFERENCES).scalar_one() == 0
            assert db.session.execute(sa.text("SELECT status FROM calculation_runs")).scalar_one() == "running"
            calculate_metrics(database(), calculation_settings(settings()), now=now())
            assert db.session.execute(FRESH_COUNT_DIFFERENCES).scalar_one() == 0
            statuses = db.session.execute(sa.text("SELECT status FROM calculation_runs ORDER BY id")).scalars().all()
        assert 0 < partial < computed()
        assert statuses == ["abandoned", "finished"]
    finally:
        stop(worker, log_path)


def test_the_same_event_delivered_concurrently_is_stored_once(app):
    event_id = str(uuid.uuid4())
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def deliver() -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(post_event(client, id=event_id, occurred_at=DAY0.isoformat()).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Counter(statuses) == {201: 1, 200: 7}
    assert count_rows(app, "events") == 1


def test_redis_client_of_the_test_suite_is_left_alone(servers):
    """The shared Redis still answers: the fault tests stopped only their own servers."""
    assert redis.Redis.from_url(servers.redis_url).ping()
