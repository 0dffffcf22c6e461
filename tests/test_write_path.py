"""The lean event write path against a real PostgreSQL: prepared statements, late windows, lost connections."""
from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import sqlalchemy as sa
from flask import session

from app.core.validation import InputBounds, parse_event
from app.runtime.connections import DedicatedWriter
from app.extensions import database, db, runtime
from app.services.events import new_event_ids, record_events
from tests.helpers import count_rows, post_event

FOUR = timedelta(hours=4)
DAY0 = datetime(2025, 10, 20, tzinfo=timezone.utc)


def store(app, when: datetime, now: datetime) -> None:
    with app.app_context():
        new = parse_event(json.dumps({"user_id": 1, "action": "a", "occurred_at": when.isoformat()}).encode(), now=now,
                          bounds=InputBounds())
        record_events(database(), [new], now=now, window_size=FOUR)


def stale_windows(app) -> list[datetime]:
    with app.app_context():
        return db.session.execute(sa.text(
            "SELECT window_start FROM metrics_windows WHERE stale ORDER BY 1")).scalars().all()


def test_an_event_is_late_exactly_when_its_window_has_ended(app):
    store(app, DAY0 + FOUR, now=DAY0 + FOUR)
    assert stale_windows(app) == []
    store(app, DAY0 + FOUR - timedelta(microseconds=1), now=DAY0 + FOUR)
    assert stale_windows(app) == [DAY0]
    assert count_rows(app, "events") == 2


def test_the_single_event_insert_runs_as_a_prepared_statement(client, app):
    for _ in range(6):  # psycopg prepares a statement on its fifth run on a connection
        assert post_event(client).status_code == 201
    # single events are written by the process's group commit, on its connection of its own
    with app.app_context(), runtime().group_commit.writer.write() as connection:
        prepared = [row[0] for row in connection.execute("SELECT statement FROM pg_prepared_statements")]
    assert any("INSERT INTO events" in statement for statement in prepared)


def test_the_group_commits_own_connection_is_replaced_after_its_recycle_time(database_url):
    now = [0.0]
    writer = DedicatedWriter(database_url, clock=lambda: now[0])
    try:
        with writer.write() as first:
            first_pid = first.info.backend_pid
        now[0] = DedicatedWriter.RECYCLE_SECONDS - 1
        with writer.write() as same:
            assert same.info.backend_pid == first_pid
        now[0] = DedicatedWriter.RECYCLE_SECONDS
        with writer.write() as later:
            assert later.info.backend_pid != first_pid and first.closed
            # it gives up on a silent network instead of holding every single event of the process
            parameters = later.info.get_parameters()
            assert (parameters["connect_timeout"], parameters["tcp_user_timeout"]) == ("5", "30000")
    finally:
        writer.close()


def test_the_group_commits_own_connection_computes_in_utc_like_the_pooled_ones(client, app):
    assert post_event(client).status_code == 201
    with app.app_context(), runtime().group_commit.writer.write() as own, database().write() as pooled:
        assert own is not pooled
        assert own.execute("SHOW timezone").fetchone() == pooled.execute("SHOW timezone").fetchone() == ("UTC",)


def test_a_connection_the_server_dropped_costs_at_most_a_503_then_is_replaced(client, app, database_url):
    assert post_event(client).status_code == 201
    with psycopg.connect(database_url, autocommit=True) as admin:
        others = "datname = current_database() AND pid <> pg_backend_pid()"
        admin.execute(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {others}")
        deadline = time.monotonic() + 10
        while admin.execute(f"SELECT count(*) FROM pg_stat_activity WHERE {others}").fetchone()[0]:
            assert time.monotonic() < deadline, "the backends did not terminate"
            time.sleep(0.05)
    response = post_event(client)
    assert response.status_code in (201, 503)
    if response.status_code == 503:
        assert response.headers["Retry-After"]
        assert response.get_json()["error"]["code"] == "database_unavailable"
    assert post_event(client).status_code == 201


def test_api_requests_open_no_cookie_session_but_pages_do(app):
    with app.test_request_context("/api/events"):
        assert app.session_interface.is_null_session(session)
    with app.test_request_context("/"):
        assert not app.session_interface.is_null_session(session)
        session["seen"] = True


def test_event_ids_are_unique_time_ordered_uuid7s():
    first = new_event_ids(1000)
    time.sleep(0.002)
    (later,) = new_event_ids(1)
    assert len(set(first)) == 1000
    assert all(event_id.version == 7 and event_id.variant == uuid.RFC_4122 for event_id in [*first, later])
    assert max(first) < later


def test_metadata_beyond_64_bit_integers_is_stored_and_answered_exactly(client):
    metadata = {"order": 2**70, "name": "café ☕"}
    response = post_event(client, metadata=metadata)
    assert response.status_code == 201
    assert response.get_json()["metadata"] == metadata
    assert client.get("/api/events?user_id=1").get_json()["events"][0]["metadata"] == metadata
