"""Small helpers shared by tests."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask

from app import create_app, extensions
from app.dev.fixtures import free_port, wait_until
from app.extensions import db

__all__ = ["free_port", "wait_until"]  # shared with bench/ and soak/ through app.dev.fixtures

# The document whose configuration table and compose section tests keep in step with the code.
README_PATH = Path(__file__).resolve().parent.parent / "README.md"


def count_rows(app: Flask, table: str) -> int:
    with app.app_context():
        return db.session.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def post_event(client: Any, **fields: Any) -> Any:
    body = {"user_id": 1, "action": "page_view", "metadata": {}}
    body.update(fields)
    return client.post("/api/event", json=body)


ROOT = Path(__file__).resolve().parent.parent


def spawn(command: list[str], config: dict[str, Any], log_path: Path) -> subprocess.Popen:
    """Start one of the service's processes (worker, scheduler) with the test app's settings.

    It runs in a process group of its own so a test can signal it together
    with the RQ work horse it forks.
    """
    env = {**os.environ, **{key: str(value) for key, value in config.items()}, "PYTHONUNBUFFERED": "1"}
    with log_path.open("w") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                process_group=0)


def stop(process: subprocess.Popen, log_path: Path | None = None) -> None:
    """SIGTERM (warm shutdown), then SIGKILL the group if it does not exit in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if log_path is not None and log_path.exists():
        print(log_path.read_text())


WORKER = [sys.executable, "worker.py"]
SCHEDULER = [sys.executable, "-m", "flask", "--app", "wsgi", "scheduler", "--interval", "1"]


@contextmanager
def separate_app(config: dict[str, Any]) -> Iterator[Flask]:
    """An app with settings of its own (another server), whose connections are closed afterwards."""
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
