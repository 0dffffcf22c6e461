"""Small helpers shared by tests."""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Flask

from app.extensions import db


def count_rows(app: Flask, table: str) -> int:
    with app.app_context():
        return db.session.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def post_event(client: Any, **fields: Any) -> Any:
    body = {"user_id": 1, "action": "page_view", "metadata": {}}
    body.update(fields)
    return client.post("/api/event", json=body)
