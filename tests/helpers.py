"""Small helpers shared by tests."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from flask import Flask

from app import create_app
from app.extensions import db


def count_rows(app: Flask, table: str) -> int:
    with app.app_context():
        return db.session.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def post_event(client: Any, **fields: Any) -> Any:
    body = {"user_id": 1, "action": "page_view", "metadata": {}}
    body.update(fields)
    return client.post("/api/event", json=body)


@contextmanager
def another_app(config: dict[str, Any]) -> Iterator[Flask]:
    """A second app (for example with a server that is down), its connections closed afterwards."""
    app = create_app(config)
    try:
        yield app
    finally:
        with app.app_context():
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()
