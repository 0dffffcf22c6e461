"""The reference apps: Flask with nothing behind it, and Flask with one INSERT through a psycopg pool.

They give the ceilings the service is measured against: what the framework
alone answers, and what the thinnest app writing to the same `events` table
answers, on gunicorn (`app`) and on the service's own server (`front`).
"""
from __future__ import annotations

import os
import uuid

from flask import Flask, request
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from app.core.settings import Settings, load_config
from app.serving.server import front_for

INSERT = ("INSERT INTO events (id, user_id, action, metadata, occurred_at, received_at)"
          " VALUES (%s, %s, %s, %s, now(), now())")

app = Flask(__name__)
pool = ConnectionPool(os.environ["DATABASE_URL"], min_size=int(os.environ.get("BENCH_POOL_SIZE", "4")),
                      max_size=int(os.environ.get("BENCH_POOL_SIZE", "4")), open=True,
                      kwargs={"autocommit": True})


@app.post("/bare")
def bare() -> tuple[dict[str, bool], int]:
    """The framework ceiling: routing and a JSON response, no work."""
    return {"ok": True}, 201


@app.post("/insert")
def insert() -> tuple[dict[str, str], int]:
    """The thinnest writing app: parse the body, one INSERT in its own transaction, answer the id."""
    event = request.get_json()
    event_id = uuid.uuid4()
    with pool.connection() as conn:
        conn.execute(INSERT, (event_id, event["user_id"], event["action"], Jsonb(event.get("metadata", {}))))
    return {"id": str(event_id)}, 201


front = front_for(app, Settings.from_mapping(load_config()))
