"""Small helpers shared by tests."""
from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import Flask

from app.extensions import db

# The document with the operations sections (configuration table, compose services); the README
# once they are merged into it.
README_PATH = Path(__file__).resolve().parent.parent / "docs" / "README-ops.md"


def count_rows(app: Flask, table: str) -> int:
    with app.app_context():
        return db.session.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def post_event(client: Any, **fields: Any) -> Any:
    body = {"user_id": 1, "action": "page_view", "metadata": {}}
    body.update(fields)
    return client.post("/api/event", json=body)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def poll(check: Callable[[], bool], timeout: float = 15.0, interval: float = 0.05) -> None:
    """Wait until `check()` is true, failing after `timeout` seconds instead of sleeping a fixed time."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        time.sleep(interval)
