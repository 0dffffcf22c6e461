"""`GET /api/events/export`: the list's filters as a CSV file streamed from a server-side cursor."""
from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
import sqlalchemy as sa

from app.extensions import db
from app.extensions import database
from app.services.events import EventFilter, iter_events
from tests.helpers import post_event

UTC = timezone.utc
DAY0 = datetime(2025, 10, 20, tzinfo=UTC)


def insert_events(app, count: int, user_id: int = 7) -> None:
    """Many events in one statement, a second apart from DAY0, every third on `/home`."""
    with app.app_context():
        db.session.execute(sa.text("""
            INSERT INTO events (id, user_id, action, metadata, occurred_at)
            SELECT gen_random_uuid(), :user_id, CASE WHEN n % 2 = 0 THEN 'click' ELSE 'page_view' END,
                   jsonb_build_object('page', CASE WHEN n % 3 = 0 THEN '/home' ELSE '/p/' || n END, 'n', n),
                   :start + n * interval '1 second'
            FROM generate_series(1, :count) AS n
        """), {"user_id": user_id, "start": DAY0, "count": count})
        db.session.commit()


def read_csv(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode("utf-8"))))


def test_export_is_an_attachment_with_every_column(client):
    stored = post_event(client, user_id=5, action="signup", occurred_at="2025-10-20T13:07:00Z",
                        metadata={"x": "<b>, \"quoted\"\nline", "nested": {"a": [1, 2]}}).get_json()
    response = client.get("/api/events/export")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="events-')
    text = response.get_data(as_text=True)
    assert text.splitlines()[0] == "id,user_id,action,occurred_at,received_at,metadata"
    [row] = read_csv(response.data)
    assert row["id"] == stored["id"]
    assert row["user_id"] == "5"
    assert row["action"] == "signup"
    assert row["occurred_at"] == "2025-10-20T13:07:00.000000Z"
    assert row["received_at"] == stored["received_at"]
    assert json.loads(row["metadata"]) == {"x": "<b>, \"quoted\"\nline", "nested": {"a": [1, 2]}}


def test_export_takes_the_same_filters_as_the_list(app, client):
    insert_events(app, 30, user_id=7)
    insert_events(app, 5, user_id=8)
    query = "user_id=7&action=click&meta.page=/home&from=2025-10-20T00:00:10Z&till=2025-10-20T00:00:25Z"
    listed = client.get(f"/api/events?{query}").get_json()["events"]
    exported = read_csv(client.get(f"/api/events/export?{query}").data)
    assert [row["id"] for row in exported] == [event["id"] for event in listed]
    assert [json.loads(row["metadata"])["n"] for row in exported] == [12, 18, 24]


def test_export_of_nothing_is_just_the_header(client):
    response = client.get("/api/events/export?user_id=999")
    assert response.status_code == 200
    assert response.get_data(as_text=True) == "id,user_id,action,occurred_at,received_at,metadata\r\n"


def test_export_refuses_paging_and_bad_filters_with_the_error_envelope(client):
    for query, field in (("limit=10", "limit"), ("cursor=abc", "cursor"), ("user_id=-1", "user_id"),
                         ("from=2025-02-30T00:00:00Z", "from"), ("colour=red", "colour")):
        response = client.get(f"/api/events/export?{query}")
        assert response.status_code == 400, query
        assert response.get_json()["error"]["field"] == field


class CountingServerCursor(psycopg.ServerCursor):
    """psycopg's own server-side cursor, noting each FETCH it sends: (rows asked for, rows received)."""

    fetches: list[tuple[int, int]] = []

    def fetchmany(self, size: int = 0) -> list:
        rows = super().fetchmany(size)
        self.fetches.append((size, len(rows)))
        return rows


@pytest.fixture
def fetches(app) -> Iterator[list[tuple[int, int]]]:
    """The FETCHes of every server-side cursor the app opens during the test, in order."""
    def count_fetches(dbapi_connection, _record, _proxy) -> None:
        dbapi_connection.server_cursor_factory = CountingServerCursor

    CountingServerCursor.fetches = []
    with app.app_context():
        engine = database().read_engine
    sa.event.listen(engine, "checkout", count_fetches)
    yield CountingServerCursor.fetches
    sa.event.remove(engine, "checkout", count_fetches)


def batches_of(fetches: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The FETCHes after SQLAlchemy's first one, which reads a single row to learn the result's columns."""
    return fetches[1:] if fetches[:1] == [(1, 1)] else fetches


def test_a_large_export_streams_through_a_server_side_cursor_in_batches(app, client, fetches):
    insert_events(app, 3000)
    response = client.get("/api/events/export?user_id=7", buffered=False)
    try:
        assert response.status_code == 200
        assert response.is_streamed
        chunks = iter(response.response)
        first = next(chunks)
        assert first.startswith(b"id,user_id,action")
        assert len(first) < 100 * 1024, "the first chunk must not hold the whole file"
        batches = batches_of(fetches)
        assert len(batches) == 1, f"the first chunk leaves after one FETCH, not after reading every row: {fetches}"
        batch = batches[0][0]
        assert 1 < batch < 3000 and batches[0][1] == batch
        body = first + b"".join(chunks)
    finally:
        response.close()  # hands the cursor's connection back even when an assertion failed
    batches = batches_of(fetches)
    assert {asked for asked, _ in batches} == {batch}
    assert sum(received for _, received in fetches) == 3000
    assert len(batches) in (math.ceil(2999 / batch), math.ceil(2999 / batch) + 1)  # + the empty FETCH that ends it
    rows = read_csv(body)
    assert len(rows) == 3000
    times = [row["occurred_at"] for row in rows]
    assert times == sorted(times)
    assert times[0] == "2025-10-20T00:00:01.000000Z"
    assert times[-1] == (DAY0 + timedelta(seconds=3000)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    assert len({row["id"] for row in rows}) == 3000


def test_iter_events_fetches_batch_size_rows_at_a_time_in_time_order(app, fetches):
    insert_events(app, 25)
    with app.app_context():
        events = iter_events(database(), EventFilter(user_id=7, action="page_view"), batch_size=4)
        first = next(events)
        assert sum(received for _, received in fetches) <= 5, f"no more than a batch before the first event: {fetches}"
        rest = list(events)
    assert [asked for asked, _ in batches_of(fetches)] == [4] * len(batches_of(fetches))
    assert [received for _, received in batches_of(fetches)] in ([4, 4, 4], [4, 4, 4, 0])
    assert len([first, *rest]) == 13
    times = [event.occurred_at for event in [first, *rest]]
    assert times == sorted(times)
