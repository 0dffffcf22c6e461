"""SIGTERM with work in flight: real `python worker.py` and real web server processes.

What compose sends on `docker compose stop` (SIGTERM to the container's main
process) must let the current job or request finish, and the process must
then exit cleanly.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from app.extensions import database, db, now, settings
from app.jobs.queue import JobTimeout
from app.jobs.tasks import calculation_settings, timeout_behind
from app.services.calculation import calculate_metrics
from tests.helpers import WEB, free_port, make_partitions, separate_app, stop, title, wait_until

ROOT = Path(__file__).resolve().parent.parent
# A year of 4-hour windows, one window per transaction: long enough to be caught mid-run.
CATCH_UP_DAYS = 365


def process_env(app_config: dict[str, object], **extra: object) -> dict[str, str]:
    settings = {**app_config, **extra}
    return {**os.environ, **{key: str(value) for key, value in settings.items()}, "PYTHONUNBUFFERED": "1"}


def json_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


@pytest.fixture
def backlog(app) -> int:
    """A few thousand events spread over a year and ending a day ago (all in closed windows), so a
    catch-up run has many windows to compute."""
    now = datetime.now(timezone.utc)
    make_partitions(app, now - timedelta(days=CATCH_UP_DAYS + 1), now)
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(sa.text("""
                INSERT INTO events (id, user_id, action, metadata, occurred_at, received_at)
                SELECT gen_random_uuid(), 1 + n % 50, 'page_view', '{}',
                       now() - make_interval(days => :days + 1) + n * interval '2 hours', now()
                FROM generate_series(0, :days * 12 - 1) AS n
            """), {"days": CATCH_UP_DAYS})
            return conn.execute(sa.text("SELECT count(*) FROM events")).scalar_one()


def test_sigterm_lets_the_worker_finish_its_job_and_exit_0(app, app_config, client, backlog, tmp_path):
    log_path = tmp_path / "worker.log"
    env = process_env(app_config, LOG_FORMAT="json", METRICS_CHUNK_WINDOWS=1)
    with log_path.open("w") as log:
        worker = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        job = client.post("/api/metrics").get_json()["job"]
        wait_until(lambda: client.get(job["url"]).get_json()["job"]["status"] != "queued", timeout=30)
        assert client.get(job["url"]).get_json()["job"]["status"] == "started"
        worker.send_signal(signal.SIGTERM)
        with app.app_context():
            signalled_at = db.session.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
            db.session.rollback()
        assert worker.wait(timeout=120) == 0
    finally:
        stop(worker, timeout=30)
        print(log_path.read_text())

    done = client.get(job["url"]).get_json()["job"]
    assert done["status"] == "finished"
    assert done["summary"]["events"] == backlog
    with app.app_context():
        finished_at = db.session.execute(sa.text("SELECT finished_at FROM calculation_runs")).scalar_one()
    assert finished_at > signalled_at, "the job was over before SIGTERM: make the backlog larger"

    lines = json_lines(log_path)
    assert any("warm shut down" in line["msg"].lower() for line in lines), "RQ did not take the warm path"
    (finished,) = [line for line in lines if line["msg"] == "job finished"]
    assert finished["job_id"] == job["id"]
    assert finished["window_from"] == done["summary"]["from"] and finished["window_till"] == done["summary"]["till"]
    assert finished["rows_written"] == done["summary"]["rows_written"] > 0
    assert finished["duration_ms"] >= 0
    (started,) = [line for line in lines if line["msg"] == "job started"]
    assert started["job_id"] == job["id"] and started["trigger"] == "manual"


@pytest.fixture
def web(app, app_config, tmp_path) -> Iterator[tuple[subprocess.Popen, int, Path]]:
    """The web server as compose runs it (`python -m app.serving`), with Prometheus' multiprocess mode on."""
    port = free_port()
    metrics_dir = tmp_path / "prometheus"
    log_path = tmp_path / "web.log"
    env = process_env(app_config, PORT=port, WEB_WORKERS=2, WEB_THREADS=2, WEB_GRACEFUL_TIMEOUT=20,
                      PROMETHEUS_MULTIPROC_DIR=metrics_dir, LOG_FORMAT="json")
    with log_path.open("w") as log:
        process = subprocess.Popen(WEB, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _get(port, "/healthz") == 200, timeout=30)
        yield process, port, log_path
    finally:
        stop(process, timeout=30)
        print(log_path.read_text())


def _get(port: int, path: str) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status
    except OSError:
        return None


def test_the_web_server_finishes_a_request_in_flight_after_sigterm(web):
    process, port, log_path = web
    body = json.dumps({"user_id": 9, "action": "in_flight"}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(b"POST /api/event HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\nExpect: 100-continue\r\nX-Request-ID: in-flight-1\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
        # 100 Continue comes once a worker has the headers and asks for the body: the request is in flight.
        assert conn.recv(64).startswith(b"HTTP/1.1 100 Continue")
        process.send_signal(signal.SIGTERM)
        wait_until(lambda: "Shutting down granian" in log_path.read_text(), timeout=30)
        conn.sendall(body)
        response = b""
        while chunk := conn.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 201"), response[:200]
    assert b"x-request-id: in-flight-1" in response.lower()
    assert process.wait(timeout=60) == 0
    assert _get(port, "/healthz") is None


def test_the_web_workers_share_their_prometheus_counters(web):
    _, port, _ = web
    for user_id in range(1, 7):
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/event", method="POST",
                                         data=json.dumps({"user_id": user_id, "action": "x"}).encode(),
                                         headers={"Content-Type": "application/json", "Connection": "close"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201

    def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/internal/metrics", timeout=10) as response:
            text = response.read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    # each worker applies its observations every 0.1 s: the other worker's may show a moment later
    counted = wait_until(lambda: (found := samples()).get(("tracking_events_ingested_total", ())) == 6 and found,
                         timeout=10)
    assert counted[("tracking_http_requests_total",
                    (("method", "POST"), ("route", "/api/event"), ("status", "201")))] == 6


def test_a_job_past_its_timeout_is_stopped_and_the_next_run_is_not_blocked(app, app_config, client, backlog,
                                                                           tmp_path):
    """RQ's job timeout holds for the calculation: the horse stops at METRICS_JOB_TIMEOUT, nothing of it
    runs on (in the worker or in PostgreSQL), and the next calculation gets the lock."""
    log_path = tmp_path / "worker.log"
    # 2 s: long enough for the run to have started (and be recorded) on a busy machine, far too short
    # for the backlog.
    env = process_env(app_config, METRICS_CHUNK_WINDOWS=1, METRICS_JOB_TIMEOUT=2, METRICS_JOB_RETRIES=0)
    with log_path.open("w") as log:
        worker = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        with separate_app({**app_config, "METRICS_JOB_TIMEOUT": 2, "METRICS_JOB_RETRIES": 0}) as timed:
            job = timed.test_client().post("/api/metrics").get_json()["job"]
            failed = wait_until(lambda: (j := client.get(job["url"]).get_json()["job"])["status"] == "failed" and j,
                                timeout=60)
        assert "exceeded maximum timeout value (2 seconds)" in failed["error"], failed
        # RQ retitles its work horse "...: Processing <job>"; the worker's other child is RQ's scheduler.
        wait_until(lambda: not any("Processing" in title(child)
                                   for child in psutil.Process(worker.pid).children()), timeout=10)
        with app.app_context():
            def statements_running() -> int:
                db.session.rollback()  # a fresh snapshot of pg_stat_activity each time
                return db.session.execute(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state = 'active' AND pid <> pg_backend_pid()")).scalar_one()

            wait_until(lambda: statements_running() == 0, timeout=30)
            # not blocked by a lock left behind
            calculate_metrics(database(), calculation_settings(settings()), now=now())
            counted = db.session.execute(sa.text("SELECT sum(event_count) FROM user_activity_metrics")).scalar_one()
            assert counted == backlog  # the chunks the stopped run committed, and the rest
            statuses = db.session.execute(sa.text("SELECT status FROM calculation_runs ORDER BY id")).scalars().all()
        assert statuses == ["failed", "finished"], statuses  # the timed-out run recorded its own failure
    finally:
        stop(worker)
        print(log_path.read_text())



class Alarm(sa.types.TypeDecorator):
    """A bind parameter whose processing is where RQ's alarm goes off."""

    impl = sa.Integer
    cache_ok = True

    def process_bind_param(self, value, dialect):
        raise JobTimeout("Task exceeded maximum timeout value (2 seconds)")


def test_a_timeout_landing_inside_sqlalchemy_is_still_reported_as_the_timeout(app):
    """Where RQ's alarm lands is luck. Landing in SQLAlchemy's statement preparation, it comes out as a
    StatementError (what CI once showed as the job's error: "[SQL parameters hidden...]"); the job
    re-raises the timeout behind it, so its status says "exceeded maximum timeout value"."""
    with app.app_context(), database().primary.connect() as conn:
        with pytest.raises(sa.exc.StatementError) as wrapped:
            conn.execute(sa.select(sa.literal(1, type_=Alarm())))
    timeout = timeout_behind(wrapped.value)
    assert isinstance(timeout, JobTimeout) and "exceeded maximum timeout value" in str(timeout)
    assert timeout_behind(sa.exc.StatementError("unrelated", None, {}, ValueError("x"))) is None
