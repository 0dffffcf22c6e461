"""The events half of the JSON API, against a real PostgreSQL."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone


from app.core.times import format_rfc3339
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


def _drop_partition_of(app, day: datetime) -> None:
    """Make sure no partition holds `day`, whatever earlier tests (or runs) left behind."""
    from app.core.partitions import partition_of
    from app.extensions import db
    import sqlalchemy as sa
    with app.app_context(), db.engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {partition_of(day).name}"))


def test_an_event_for_a_day_without_a_partition_is_stored_and_listed(client, app):
    day = datetime(1990, 3, 4, 5, 6, tzinfo=timezone.utc)
    _drop_partition_of(app, day)
    response = post_event(client, user_id=77, occurred_at=format_rfc3339(day))
    assert response.status_code == 201, response.get_json()
    listed = client.get("/api/events?user_id=77").get_json()["events"]
    assert [(e["id"], e["occurred_at"]) for e in listed] == [(response.get_json()["id"], format_rfc3339(day))]


def test_a_batch_over_days_without_partitions_is_stored_whole(client, app):
    days = [datetime(1990, 3, 5, 1, tzinfo=timezone.utc), datetime(1990, 3, 7, 23, tzinfo=timezone.utc)]
    for day in days:
        _drop_partition_of(app, day)
    events = [{"user_id": 78, "action": "a", "occurred_at": format_rfc3339(day)} for day in days]
    response = client.post("/api/events/batch", json={"events": events})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["created"] == 2
    listed = client.get("/api/events?user_id=78").get_json()["events"]
    assert [e["occurred_at"] for e in listed] == [format_rfc3339(day) for day in days]


def test_a_batch_with_a_retry_and_an_event_for_a_day_without_a_partition_stores_the_new_one(client, app):
    retried = {"user_id": 80, "action": "a", "id": str(uuid.uuid4()), "occurred_at": format_rfc3339(T0)}
    assert client.post("/api/event", json=retried).status_code == 201
    day = datetime(1990, 3, 11, 12, tzinfo=timezone.utc)
    _drop_partition_of(app, day)
    fresh = {"user_id": 80, "action": "b", "occurred_at": format_rfc3339(day)}
    response = client.post("/api/events/batch", json={"events": [retried, fresh]})
    assert response.status_code == 200, response.get_json()
    assert (response.get_json()["created"], response.get_json()["duplicates"]) == (1, 1)
    assert count_rows(app, "events") == 2


def test_a_retry_whose_event_retention_dropped_but_whose_key_is_still_held_is_a_409_not_a_500(client, app):
    """Retention drops a day's partition before it deletes that day's client ids: a retry in between
    finds the id taken but no event to compare with, and must be told so, not get a server error."""
    day = datetime(1990, 3, 9, 10, tzinfo=timezone.utc)
    event_id = str(uuid.uuid4())
    _drop_partition_of(app, day)
    assert post_event(client, user_id=79, id=event_id, occurred_at=format_rfc3339(day)).status_code == 201
    _drop_partition_of(app, day)
    retry = post_event(client, user_id=79, id=event_id, occurred_at=format_rfc3339(day))
    assert retry.status_code == 409
    assert (retry.get_json()["error"]["code"], retry.get_json()["error"]["field"]) == ("id_conflict", "id")
    assert count_rows(app, "events") == 0


def test_metadata_filters_match_fractional_numbers_and_overflowing_ones_only_as_text(client):
    price = _store(client, 1, T0, price=2.5)
    text = _store(client, 1, T0 + timedelta(seconds=1), price="1e400")
    _store(client, 1, T0 + timedelta(seconds=2), price=None)
    _store(client, 1, T0 + timedelta(seconds=3), price="NaN")
    assert [e["id"] for e in client.get("/api/events?meta.price=2.5").get_json()["events"]] == [price["id"]]
    assert [e["id"] for e in client.get("/api/events?meta.price=1e400").get_json()["events"]] == [text["id"]]
    assert [e["metadata"] for e in client.get("/api/events?meta.price=NaN").get_json()["events"]] == [
        {"price": "NaN"}]
