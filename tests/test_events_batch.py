"""`POST /api/events/batch`: many events in one request, all or none."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from app.extensions import db
from tests.helpers import count_rows

DAY0 = datetime(2025, 10, 20, tzinfo=timezone.utc)


def event(i: int, **fields):
    body = {"user_id": i % 5 + 1, "action": f"a{i % 3}", "metadata": {"i": i},
            "occurred_at": (DAY0 + timedelta(minutes=i)).isoformat()}
    body.update(fields)
    return body


def test_batch_stores_every_event_in_order(client, app):
    items = [event(i) for i in range(1000)]
    response = client.post("/api/events/batch", json={"events": items})
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["created"] == 1000 and body["duplicates"] == 0
    assert len(body["events"]) == 1000
    assert count_rows(app, "events") == 1000
    listed = client.get("/api/events?user_id=1&limit=1000").get_json()["events"]
    assert [e["metadata"]["i"] for e in listed] == [i for i in range(1000) if i % 5 == 0]


def test_batch_is_idempotent_on_client_ids(client, app):
    items = [event(i, id=str(uuid.uuid4())) for i in range(10)]
    assert client.post("/api/events/batch", json={"events": items[:4]}).get_json()["created"] == 4
    again = client.post("/api/events/batch", json={"events": items}).get_json()
    assert (again["created"], again["duplicates"]) == (6, 4)
    assert [e["status"] for e in again["events"]] == ["duplicate"] * 4 + ["created"] * 6
    assert [e["id"] for e in again["events"]] == [item["id"] for item in items]
    assert count_rows(app, "events") == 10


def test_the_same_id_twice_in_one_batch_is_stored_once(client, app):
    same = str(uuid.uuid4())
    body = client.post("/api/events/batch", json={"events": [event(1, id=same), event(1, id=same)]}).get_json()
    assert [e["status"] for e in body["events"]] == ["created", "duplicate"]
    assert count_rows(app, "events") == 1


def test_a_reused_id_with_other_content_rejects_the_whole_batch(client, app):
    taken = str(uuid.uuid4())
    client.post("/api/events/batch", json={"events": [event(1, id=taken)]})
    # event 6 is the same user as event 1, with another action, metadata and time
    response = client.post("/api/events/batch", json={"events": [event(2), event(6, id=taken)]})
    assert response.status_code == 409
    error = response.get_json()["error"]
    assert error["details"] == [{"index": 1, "field": "id",
                                 "message": "an event with this id already exists with different content"}]
    assert count_rows(app, "events") == 1


def test_an_id_is_the_clients_own_per_user(client, app):
    shared = str(uuid.uuid4())
    body = client.post("/api/events/batch", json={"events": [event(1, id=shared), event(2, id=shared)]}).get_json()
    assert [e["status"] for e in body["events"]] == ["created", "created"]
    again = client.post("/api/events/batch", json={"events": [event(2, id=shared), event(1, id=shared)]}).get_json()
    assert [e["status"] for e in again["events"]] == ["duplicate", "duplicate"]
    assert count_rows(app, "events") == 2


def test_invalid_items_reject_the_whole_batch_with_per_index_errors(client, app):
    items = [event(0), event(1, user_id=0), event(2), event(3, action=""), event(4, colour="red")]
    response = client.post("/api/events/batch", json={"events": items})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_batch"
    assert [(d["index"], d["field"]) for d in error["details"]] == [(1, "user_id"), (3, "action"), (4, "colour")]
    assert count_rows(app, "events") == 0


def test_batch_over_1000_items_is_rejected(client, app):
    response = client.post("/api/events/batch", json={"events": [{"user_id": 1, "action": "a"}] * 1001})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "batch_too_large"
    assert count_rows(app, "events") == 0


def test_batch_envelope_must_be_an_object_with_a_non_empty_events_array(client):
    for body, field in (([], "events"), ({"events": []}, "events"), ({"events": {}}, "events"), ({}, "events"),
                        ({"events": [event(0)], "extra": 1}, "extra"), ({"items": []}, "items")):
        response = client.post("/api/events/batch", json=body)
        assert response.status_code == 400
        assert response.get_json()["error"]["field"] == field, body


def test_late_events_in_a_batch_mark_their_windows_stale(client, app, runner):
    client.post("/api/events/batch", json={"events": [event(0)]})
    assert runner.invoke(args=["calculate-metrics"]).exit_code == 0
    client.post("/api/events/batch", json={"events": [event(1), event(2), event(300)]})
    with app.app_context():
        stale = db.session.execute(sa.text(
            "SELECT window_start FROM metrics_windows WHERE stale ORDER BY 1")).scalars().all()
    assert stale == [DAY0, DAY0 + timedelta(hours=4)]
    assert runner.invoke(args=["calculate-metrics"]).exit_code == 0
    metrics = client.get("/api/metrics?from=2025-10-20T00:00:00Z&till=2025-10-20T04:00:00Z").get_json()["metrics"]
    assert sum(m["event_count"] for m in metrics) == 3
