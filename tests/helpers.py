"""Small helpers shared by tests."""
from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psutil
import psycopg
import sqlalchemy as sa
from flask import Flask

from app import create_app, extensions
from app.dev.fixtures import free_port, wait_until
from app.extensions import db
from app.services.partitions import ensure_partitions

__all__ = ["free_port", "wait_until"]  # shared with bench/ and soak/ through app.dev.fixtures

# The document whose configuration table and compose section tests keep in step with the code.
OPERATIONS_PATH = Path(__file__).resolve().parent.parent / "docs" / "operations.md"


def count_rows(app: Flask, table: str) -> int:
    with app.app_context():
        return db.session.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def make_partitions(app: Flask, start: datetime, end: datetime) -> None:
    """Partitions of `events` for `[start, end)`, for tests that insert rows with SQL of their own
    (the service's write path makes the partitions it needs itself)."""
    with app.app_context():
        ensure_partitions(extensions.database(), start, end)


def drop_partitions(app: Flask, start: datetime, end: datetime) -> None:
    """Drop the day partitions of `events` for `[start, end)` that exist, so a test that expects
    them made sees them made: a database outlives the session (`make mutate` lends the same few
    to every mutant's session), and with it the partitions earlier sessions made."""
    utc = start.astimezone(timezone.utc)
    day = datetime(utc.year, utc.month, utc.day, tzinfo=timezone.utc)
    with app.app_context():
        while True:
            db.session.execute(sa.text(f"DROP TABLE IF EXISTS events_p{day:%Y%m%d}"))
            day += timedelta(days=1)
            if day >= end:
                break
        db.session.commit()


def post_event(client: Any, **fields: Any) -> Any:
    body = {"user_id": 1, "action": "page_view", "metadata": {}}
    body.update(fields)
    return client.post("/api/event", json=body)


ROOT = Path(__file__).resolve().parent.parent


WEB = [sys.executable, "-m", "app.serving"]


def start_web(config: dict[str, Any], log_path: Path) -> subprocess.Popen:
    """The web server as `make serve` and compose run it, with `config` in its environment; in a process group
    of its own, so `stop` can take its workers with it."""
    env = {**os.environ, **{key: str(value) for key, value in config.items()}, "PYTHONUNBUFFERED": "1"}
    with log_path.open("w") as log:
        return subprocess.Popen(WEB, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, process_group=0)


def answers_healthz(port: int) -> bool:
    """Whether a server on `port` answers `/healthz` with 200 (a worker has loaded the app)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def title(process: psutil.Process) -> str:
    """A process's command line as RQ retitles it; "" once it has ended (a zombie not yet
    reaped by its parent has no command line to read, and is done working)."""
    try:
        return " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return ""


def spawn(command: list[str], config: dict[str, Any], log_path: Path) -> subprocess.Popen:
    """Start one of the service's processes (worker, scheduler) with the test app's settings.

    It runs in a process group of its own so a test can signal it together
    with the RQ work horse it forks.
    """
    env = {**os.environ, **{key: str(value) for key, value in config.items()}, "PYTHONUNBUFFERED": "1"}
    with log_path.open("w") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                process_group=0)


def stop(process: subprocess.Popen, log_path: Path | None = None, timeout: float = 15) -> None:
    """SIGTERM (a warm shutdown: the web server and RQ stop their children too), then SIGKILL if it does not exit
    in time: its whole process group when it leads one (a work horse or web worker goes with it)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            if os.getpgid(process.pid) == process.pid:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
            process.wait()
    if log_path is not None and log_path.exists():
        print(f"--- {log_path.name}\n{log_path.read_text()}")


WORKER = [sys.executable, "worker.py"]
SCHEDULER = [sys.executable, "-m", "flask", "--app", "wsgi", "scheduler", "--interval", "1"]


@contextmanager
def separate_app(config: dict[str, Any]) -> Iterator[Flask]:
    """An app with settings of its own (another server), whose connections are closed afterwards.

    Budgets are fixed windows on the clock: an app with a budget per minute starts early enough in a minute
    for its test to end within it, rather than find its budget full again in the next one.
    """
    if any(key.startswith("RATE_LIMIT_") and str(value).endswith("per minute") for key, value in config.items()):
        left = 60 - time.time() % 60
        if left < 10:
            time.sleep(left)
    app = create_app(config)
    try:
        yield app
    finally:
        extensions.close(app)


class Clock:
    """A clock a test sets and moves, given to the app as `CLOCK`: time-dependent cases move it instead of sleeping."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def csrf_token_of(client: Any) -> str:
    """The dashboard session's CSRF token, as the page hands it to htmx."""
    page = client.get("/events").get_data(as_text=True)
    return page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]


@contextmanager
def catch_up_held_at(app: Flask, user_id: int, first: datetime, windows: int,
                     held: int) -> Iterator[datetime]:
    """A backlog of `windows` closed 4-hour windows from `first`, one event each, whose calculation
    stops at window `held` until the block ends: that window's metrics row is locked meanwhile.

    Yields the held window's start. A run waits there on the row lock, so a test sees it part
    way through for as long as it needs, with no timing involved.
    """
    size = timedelta(hours=4)
    start = first + held * size
    make_partitions(app, first, first + windows * size)
    with app.app_context():
        database_url = extensions.settings().database_url
    with psycopg.connect(database_url, autocommit=True) as setup:
        setup.execute(
            "INSERT INTO events (id, user_id, action, metadata, occurred_at, received_at) "
            "SELECT gen_random_uuid(), %(user)s, 'page_view', '{}'::jsonb, %(first)s + n * %(size)s, now() "
            "FROM generate_series(0, %(windows)s - 1) AS n",
            {"user": user_id, "first": first, "size": size, "windows": windows})
        setup.execute(
            "INSERT INTO user_activity_metrics (user_id, window_start, window_end, event_count, actions) "
            "VALUES (%(user)s, %(start)s, %(end)s, 1, '{}'::jsonb)",
            {"user": user_id, "start": start, "end": start + size})
    holder = psycopg.connect(database_url)
    try:
        holder.execute("SELECT 1 FROM user_activity_metrics WHERE user_id = %s AND window_start = %s FOR UPDATE",
                       (user_id, start))
        yield start
    finally:
        holder.close()  # ends the transaction: the run goes on
