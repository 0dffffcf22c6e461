"""The events half of the JSON API, against a real PostgreSQL."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from app.timeutil import format_rfc3339
from tests.helpers import count_rows, post_event


def test_original_readme_create_request_is_stored(client, app):
    response = client.post(
        "/api/event",
        data='{\n  "user_id": 321,\n  "action": "test_action",\n  "metadata": {\n    "page": "/hello/world"\n  }\n}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 201
    body = response.get_json()
    assert body["user_id"] == 321
    assert body["action"] == "test_action"
    assert body["metadata"] == {"page": "/hello/world"}
    uuid.UUID(body["id"])
    assert body["occurred_at"].endswith("Z")
    listed = client.get("/api/events?user_id=321").get_json()["events"]
    assert [event["id"] for event in listed] == [body["id"]]
    assert count_rows(app, "events") == 1


def test_occurred_at_with_offset_is_stored_as_utc(client):
    response = post_event(client, occurred_at="2025-10-23T15:07:00.123456+02:00")
    assert response.status_code == 201
    assert response.get_json()["occurred_at"] == "2025-10-23T13:07:00.123456Z"


def test_default_occurred_at_is_now(client):
    before = datetime.now(timezone.utc)
    body = post_event(client).get_json()
    stored = datetime.fromisoformat(body["occurred_at"].replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= stored <= datetime.now(timezone.utc)


def test_retry_with_same_id_stores_once_and_answers_200(client, app):
    event_id = str(uuid.uuid4())
    first = post_event(client, id=event_id, occurred_at="2025-10-23T13:07:00Z")
    again = post_event(client, id=event_id, occurred_at="2025-10-23T13:07:00Z")
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.get_json() == first.get_json()
    assert count_rows(app, "events") == 1


def test_retry_without_occurred_at_returns_the_first_stored_event(client, app):
    event_id = str(uuid.uuid4())
    first = post_event(client, id=event_id)
    again = post_event(client, id=event_id)
    assert again.status_code == 200
    assert again.get_json()["occurred_at"] == first.get_json()["occurred_at"]
    assert count_rows(app, "events") == 1


def test_same_id_with_different_content_is_a_conflict(client, app):
    event_id = str(uuid.uuid4())
    assert post_event(client, id=event_id, action="a").status_code == 201
    response = post_event(client, id=event_id, action="b")
    assert response.status_code == 409
    assert response.get_json()["error"]["field"] == "id"
    assert count_rows(app, "events") == 1


def test_metadata_may_hold_any_json_values(client):
    metadata = {"n": 1, "f": 1.5, "b": True, "nil": None, "list": [1, "a"], "nested": {"x": {"y": "z"}}}
    response = post_event(client, metadata=metadata)
    assert response.status_code == 201
    assert response.get_json()["metadata"] == metadata


def test_metadata_is_optional(client):
    response = client.post("/api/event", json={"user_id": 5, "action": "login"})
    assert response.status_code == 201
    assert response.get_json()["metadata"] == {}


NOW_PLUS_HOUR = format_rfc3339(datetime.now(timezone.utc) + timedelta(hours=1))

INVALID_EVENTS = [
    ({"user_id": True}, "user_id"),
    ({"user_id": 1.0}, "user_id"),
    ({"user_id": 1.5}, "user_id"),
    ({"user_id": "321"}, "user_id"),
    ({"user_id": 0}, "user_id"),
    ({"user_id": -4}, "user_id"),
    ({"user_id": 2**63}, "user_id"),
    ({"user_id": None}, "user_id"),
    ({"action": ""}, "action"),
    ({"action": "   "}, "action"),
    ({"action": "a" * 256}, "action"),
    ({"action": 7}, "action"),
    ({"action": ["a"]}, "action"),
    ({"action": None}, "action"),
    ({"action": "bad\u0000action"}, "action"),
    ({"metadata": []}, "metadata"),
    ({"metadata": "page=/home"}, "metadata"),
    ({"metadata": None}, "metadata"),
    ({"metadata": {"big": "x" * 16 * 1024}}, "metadata"),
    ({"metadata": {"k": "v\u0000"}}, "metadata"),
    ({"metadata": {"k\u0000": "v"}}, "metadata"),
    ({"metadata": {"deep": [["\u0000"]]}}, "metadata"),
    ({"occurred_at": "2025-10-23T13:07:00"}, "occurred_at"),
    ({"occurred_at": "2025-10-257T22:07:00.000Z"}, "occurred_at"),
    ({"occurred_at": "2025-02-30T10:00:00Z"}, "occurred_at"),
    ({"occurred_at": "yesterday"}, "occurred_at"),
    ({"occurred_at": 1700000000}, "occurred_at"),
    ({"occurred_at": NOW_PLUS_HOUR}, "occurred_at"),
    ({"id": "not-a-uuid"}, "id"),
    ({"id": 12}, "id"),
    ({"colour": "red"}, "colour"),
]


@pytest.mark.parametrize(("fields", "field"), INVALID_EVENTS, ids=[repr(f)[:60] for f, _ in INVALID_EVENTS])
def test_invalid_event_is_rejected_with_its_field_and_not_stored(client, app, fields, field):
    response = post_event(client, **fields)
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["field"] == field
    assert error["code"] and error["message"]
    assert count_rows(app, "events") == 0


def test_missing_required_fields_are_named(client, app):
    response = client.post("/api/event", json={"action": "x"})
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "user_id"
    response = client.post("/api/event", json={"user_id": 3})
    assert response.get_json()["error"]["field"] == "action"
    assert count_rows(app, "events") == 0


def test_metadata_nested_a_thousand_levels_is_rejected(client, app):
    deep = "[" * 1000 + "]" * 1000
    body = '{"user_id": 1, "action": "a", "metadata": {"x": %s}}' % deep
    response = client.post("/api/event", data=body, content_type="application/json")
    assert response.status_code == 400
    assert count_rows(app, "events") == 0


@pytest.mark.parametrize("body", [
    b'{"user_id": 1, "action": ',
    b"[1, 2]",
    b'"just a string"',
    b"",
    b'{"user_id": 1, "action": "a", "metadata": {"x": NaN}}',
    b'{"user_id": 1, "action": "a", "metadata": {"x": 1e999}}',
    b'{"user_id": 1, "action": "\xff\xfe"}',
])
def test_malformed_bodies_are_400(client, app, body):
    response = client.post("/api/event", data=body, content_type="application/json")
    assert response.status_code == 400
    assert "error" in response.get_json()
    assert count_rows(app, "events") == 0


def test_non_json_content_type_is_415(client, app):
    response = client.post("/api/event", data="user_id=1&action=a",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.get_json()["error"]["code"] == "unsupported_media_type"
    assert count_rows(app, "events") == 0


def test_body_over_one_mebibyte_is_413(client, app):
    body = json.dumps({"user_id": 1, "action": "a", "metadata": {"x": "y" * (1024 * 1024)}})
    response = client.post("/api/event", data=body, content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"
    assert count_rows(app, "events") == 0


def test_unknown_api_route_is_404_envelope(client):
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_wrong_method_is_405_envelope(client):
    response = client.delete("/api/events")
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def _store(client, user_id, when, action="page_view", **metadata):
    response = post_event(client, user_id=user_id, action=action, occurred_at=format_rfc3339(when),
                          metadata=metadata)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


T0 = datetime(2025, 10, 23, 12, 0, tzinfo=timezone.utc)


def test_list_range_is_half_open(client):
    _store(client, 7, T0 - timedelta(microseconds=1))
    at_from = _store(client, 7, T0)
    inside = _store(client, 7, T0 + timedelta(hours=1))
    _store(client, 7, T0 + timedelta(hours=2))
    response = client.get("/api/events", query_string={
        "user_id": 7, "from": format_rfc3339(T0), "till": format_rfc3339(T0 + timedelta(hours=2))})
    assert response.status_code == 200
    assert [e["id"] for e in response.get_json()["events"]] == [at_from["id"], inside["id"]]


def test_list_filters_by_user_and_action_in_time_order(client):
    later = _store(client, 1, T0 + timedelta(minutes=5), action="click")
    earlier = _store(client, 1, T0, action="click")
    _store(client, 1, T0 + timedelta(minutes=1), action="page_view")
    _store(client, 2, T0, action="click")
    events = client.get("/api/events?user_id=1&action=click").get_json()["events"]
    assert [e["id"] for e in events] == [earlier["id"], later["id"]]


def test_list_without_user_returns_all_users(client):
    _store(client, 1, T0)
    _store(client, 2, T0 + timedelta(seconds=1))
    events = client.get("/api/events").get_json()["events"]
    assert [e["user_id"] for e in events] == [1, 2]


def test_paging_through_256_events_returns_each_once_in_order(client):
    ids = [_store(client, 42, T0 + timedelta(seconds=i // 2))["id"] for i in range(256)]
    _store(client, 43, T0)
    seen: list[dict] = []
    cursor = None
    pages = 0
    while True:
        query = {"user_id": 42, "limit": 100}
        if cursor:
            query["cursor"] = cursor
        body = client.get("/api/events", query_string=query).get_json()
        seen.extend(body["events"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert sorted(e["id"] for e in seen) == sorted(ids)
    assert len({e["id"] for e in seen}) == 256
    keys = [(e["occurred_at"], e["id"]) for e in seen]
    assert keys == sorted(keys)


def test_last_full_page_has_no_next_cursor(client):
    for i in range(3):
        _store(client, 9, T0 + timedelta(seconds=i))
    body = client.get("/api/events?user_id=9&limit=3").get_json()
    assert len(body["events"]) == 3
    assert body["next_cursor"] is None


def test_metadata_filter_uses_containment(client):
    home = _store(client, 1, T0, page="/home")
    _store(client, 1, T0 + timedelta(seconds=1), page="/about")
    counted = _store(client, 1, T0 + timedelta(seconds=2), n=5)
    assert [e["id"] for e in client.get("/api/events?meta.page=/home").get_json()["events"]] == [home["id"]]
    assert [e["id"] for e in client.get("/api/events?meta.n=5").get_json()["events"]] == [counted["id"]]


def test_original_readme_list_example_names_till(client):
    response = client.get("/api/events?user_id=321&from=2025-10-23T13%3A07%3A00.000Z"
                          "&till=2025-10-257T22%3A07%3A00.000Z")
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "till"


@pytest.mark.parametrize(("query", "field"), [
    ("user_id=abc", "user_id"),
    ("user_id=-1", "user_id"),
    ("user_id=0", "user_id"),
    ("user_id=1.5", "user_id"),
    ("user_id=99999999999999999999", "user_id"),
    ("user_id=1&user_id=2", "user_id"),
    ("user_id=", "user_id"),
    ("from=2025-13-01T00:00:00Z", "from"),
    ("from=2025-10-23T13:07:00", "from"),
    ("from=2025-10-24T00:00:00Z&till=2025-10-23T00:00:00Z", "till"),
    ("limit=0", "limit"),
    ("limit=1001", "limit"),
    ("limit=ten", "limit"),
    ("cursor=garbage", "cursor"),
    ("action=" + "a" * 600, "action"),
    ("colour=red", "colour"),
])
def test_invalid_list_parameters_are_400_naming_the_parameter(client, query, field):
    response = client.get(f"/api/events?{query}")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["error"]["field"] == field
