"""Inputs the rest of the suite never sends, each checked the way a client of the API or the dashboard sees it.

Every test here was written against a realistic bug that no other test
noticed (see tests/MUTATION.md): a range ending inside a window, an id reused
with another time, ties on `occurred_at` across page boundaries, metadata
nested in lists, and one user repeating an action within a window.
"""
from __future__ import annotations

import csv
import io
import json
import random
import re
import uuid
from datetime import datetime, timedelta, timezone

from app.core.times import format_rfc3339
from tests.helpers import count_rows, post_event

UTC = timezone.utc
DAY0 = datetime(2025, 10, 20, tzinfo=UTC)
FOUR = timedelta(hours=4)
HTMX = {"HX-Request": "true"}


def at(moment: datetime) -> str:
    return format_rfc3339(moment)


def store(client, user_id: int, when: datetime, action: str = "page_view", **fields):
    response = post_event(client, user_id=user_id, action=action, occurred_at=at(when), **fields)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def metric_windows(client, **query) -> dict[tuple[int, str], tuple[int, dict[str, int]]]:
    body = client.get("/api/metrics", query_string={"limit": 1000, **query}).get_json()
    assert body["next_cursor"] is None
    return {(m["user_id"], m["window_start_at"]): (m["event_count"], m["actions"]) for m in body["metrics"]}


# --- a calculation range that ends inside a window -------------------------------------------------

def test_a_range_ending_inside_a_window_recomputes_that_window_too(client, runner):
    store(client, 1, DAY0 + timedelta(hours=1))
    store(client, 1, DAY0 + timedelta(hours=5))   # in [04:00, 08:00), which the range ends inside
    store(client, 1, DAY0 + timedelta(hours=9))   # in [08:00, 12:00), outside the range
    result = runner.invoke(args=["calculate-metrics", "--from", at(DAY0 + timedelta(hours=3)),
                                 "--till", at(DAY0 + timedelta(hours=5))])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["windows"], summary["from"], summary["till"]) == (2, at(DAY0), at(DAY0 + 2 * FOUR))
    assert metric_windows(client) == {
        (1, at(DAY0)): (1, {"page_view": 1}),
        (1, at(DAY0 + FOUR)): (1, {"page_view": 1}),
    }


def test_a_range_ending_on_a_boundary_stops_before_the_next_window(client, runner):
    store(client, 1, DAY0 + timedelta(hours=1))
    store(client, 1, DAY0 + FOUR)  # the first instant of the next window: outside [from, till)
    result = runner.invoke(args=["calculate-metrics", "--from", at(DAY0), "--till", at(DAY0 + FOUR)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["windows"] == 1
    assert metric_windows(client) == {(1, at(DAY0)): (1, {"page_view": 1})}


# --- a retry with the same id but another occurred_at ---------------------------------------------

def test_the_same_id_with_another_occurred_at_is_a_409_and_the_first_time_stays(client, app):
    event_id = str(uuid.uuid4())
    first = post_event(client, id=event_id, occurred_at="2025-10-23T13:07:00Z")
    assert first.status_code == 201
    moved = post_event(client, id=event_id, occurred_at="2025-10-23T13:07:01Z")
    assert moved.status_code == 409
    assert moved.get_json()["error"]["code"] == "id_conflict"
    assert moved.get_json()["error"]["field"] == "id"
    [listed] = client.get("/api/events").get_json()["events"]
    assert listed["occurred_at"] == "2025-10-23T13:07:00.000000Z"
    assert count_rows(app, "events") == 1


def test_a_batch_reusing_a_stored_id_with_another_occurred_at_stores_nothing(client, app):
    event_id = str(uuid.uuid4())
    assert post_event(client, id=event_id, occurred_at="2025-10-23T13:07:00Z").status_code == 201
    batch = {"events": [
        {"user_id": 2, "action": "fresh"},
        {"id": event_id, "user_id": 1, "action": "page_view", "metadata": {}, "occurred_at": "2025-10-23T14:07:00Z"},
    ]}
    response = client.post("/api/events/batch", json=batch)
    assert response.status_code == 409
    assert count_rows(app, "events") == 1


# --- several events with the same occurred_at, paged ----------------------------------------------

def store_ties(client, count: int, when: datetime) -> list[str]:
    """`count` events of user 5 at one instant, with random ids sent in random order; their actions, by id."""
    ids = [uuid.uuid4() for _ in range(count)]
    events = [{"id": str(event_id), "user_id": 5, "action": f"a{index:03d}", "occurred_at": at(when)}
              for index, event_id in enumerate(ids)]
    random.Random(15).shuffle(events)
    response = client.post("/api/events/batch", json={"events": events})
    assert response.status_code == 200 and response.get_json()["created"] == count
    return [event["action"] for event in sorted(events, key=lambda event: uuid.UUID(event["id"]))]


def test_api_pages_through_ties_oldest_first_without_loss_or_repeats(client):
    by_id = store_ties(client, 7, DAY0)
    store(client, 5, DAY0 - timedelta(seconds=1), action="before")
    store(client, 5, DAY0 + timedelta(seconds=1), action="after")
    seen, cursor = [], None
    while True:
        query = {"user_id": 5, "limit": 3, **({"cursor": cursor} if cursor else {})}
        body = client.get("/api/events", query_string=query).get_json()
        seen += [event["action"] for event in body["events"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ["before", *by_id, "after"]
    exported = csv.DictReader(io.StringIO(client.get("/api/events/export").get_data(as_text=True)))
    assert [row["action"] for row in exported] == seen, "the export keeps the list's order, ties included"


def test_dashboard_pages_through_ties_newest_first_without_loss_or_repeats(client):
    by_id = store_ties(client, 120, DAY0)
    store(client, 5, DAY0 - timedelta(seconds=1), action="before")
    html = client.get("/events?user_id=5").get_data(as_text=True)
    seen = re.findall(r'<td class="col-action">([^<]+)</td>', html)
    more = re.search(r'hx-get="(/events/more\?[^"]+)"', html)
    while more:
        body = client.get(more.group(1).replace("&amp;", "&"), headers=HTMX).get_data(as_text=True)
        seen += re.findall(r'<td class="col-action">([^<]+)</td>', body)
        more = re.search(r'hx-get="(/events/more\?[^"]+)"', body)
    assert seen == [*reversed(by_id), "before"]


# --- metadata nested in lists ---------------------------------------------------------------------

def nested_lists(levels: int) -> object:
    value: object = "x"
    for _ in range(levels):
        value = [value]
    return value


def nested_objects(levels: int) -> object:
    value: object = "x"
    for _ in range(levels):
        value = {"k": value}
    return value


def test_metadata_nested_in_lists_is_stored_and_returned_exactly(client):
    metadata = {"matrix": [[1, [2, {"deep": ["x", None, True, 1.5, {"empty": []}]}]], [], {}],
                "rows": [{"id": 1, "tags": ["a", "b"]}, {"id": 2, "tags": []}], "unicode": ["é", "日本"]}
    created = post_event(client, metadata=metadata)
    assert created.status_code == 201
    assert created.get_json()["metadata"] == metadata
    [listed] = client.get("/api/events").get_json()["events"]
    assert listed["metadata"] == metadata
    [exported] = csv.DictReader(io.StringIO(client.get("/api/events/export").get_data(as_text=True)))
    assert json.loads(exported["metadata"]) == metadata


def test_integers_beyond_64_bits_in_metadata_are_kept_exactly(client):
    metadata = {"big": 2**70, "list": [-(2**65), 1]}
    assert post_event(client, metadata=metadata).get_json()["metadata"] == metadata
    [listed] = client.get("/api/events").get_json()["events"]
    assert listed["metadata"] == metadata


def test_a_metadata_filter_matches_text_as_text_and_null_only_as_null(client):
    home = post_event(client, metadata={"page": "/home"}).get_json()["id"]
    nothing = post_event(client, metadata={"page": None}).get_json()["id"]
    five = post_event(client, metadata={"page": 5}).get_json()["id"]

    def ids(query: str) -> list[str]:
        return [event["id"] for event in client.get(f"/api/events?{query}").get_json()["events"]]

    assert ids("meta.page=/home") == [home]
    assert ids("meta.page=null") == [nothing]
    assert ids("meta.page=5") == [five]


def test_nesting_depth_is_counted_through_lists_as_through_objects(client, app):
    for nest in (nested_objects, nested_lists):
        assert post_event(client, metadata={"a": nest(31)}).status_code == 201, nest.__name__
        refused = post_event(client, metadata={"a": nest(32)})
        assert refused.status_code == 400, nest.__name__
        assert refused.get_json()["error"]["field"] == "metadata"
    assert count_rows(app, "events") == 2


def test_text_inside_lists_is_checked_like_any_other_text(client, app):
    for metadata in ({"tags": ["ok", "nul\u0000here"]}, {"rows": [{"key\u0000": 1}]},
                     {"rows": [[{"a": ["\ud800"]}]]}):
        response = post_event(client, metadata=metadata)
        assert response.status_code == 400, metadata
        assert response.get_json()["error"]["field"] == "metadata"
    assert count_rows(app, "events") == 0


# --- one user doing the same action twice in one window -------------------------------------------

def breakdown(html: str) -> dict[str, int]:
    return {name: int(count) for name, count in re.findall(
        r'<span class="breakdown-name">([^<]+)</span> <span class="breakdown-count">(\d+)</span>', html)}


def test_repeated_actions_count_every_event_in_api_and_dashboard_alike(client, runner):
    store(client, 1, DAY0 + timedelta(hours=1), action="click")
    store(client, 1, DAY0 + timedelta(hours=2), action="click")
    store(client, 1, DAY0 + timedelta(hours=3), action="view")
    store(client, 2, DAY0 + timedelta(hours=1), action="click")
    result = runner.invoke(args=["calculate-metrics"])
    assert result.exit_code == 0, result.output
    assert (json.loads(result.output)["events"], json.loads(result.output)["users"]) == (4, 2)

    assert metric_windows(client) == {
        (1, at(DAY0)): (3, {"click": 2, "view": 1}),
        (2, at(DAY0)): (1, {"click": 1}),
    }
    html = client.get("/metrics?from=2025-10-20T00:00&till=2025-10-20T04:00").get_data(as_text=True)
    row = re.search(r'data-label="Users">(\d+)</td>\s*<td class="col-num" data-label="Events">(\d+)</td>', html)
    assert (int(row.group(1)), int(row.group(2))) == (2, 4)
    assert breakdown(html) == {"click": 3, "view": 1}
    one_user = client.get("/metrics?user_id=1&from=2025-10-20T00:00&till=2025-10-20T04:00").get_data(as_text=True)
    assert breakdown(one_user) == {"click": 2, "view": 1}


# --- an occurred_at slightly in the future ---------------------------------------------------------

def test_occurred_at_up_to_the_tolerance_ahead_is_accepted_and_a_microsecond_more_is_not(client, app, clock):
    now = clock.now
    for ahead in (timedelta(seconds=1), timedelta(minutes=4, seconds=59), timedelta(minutes=5)):
        response = post_event(client, occurred_at=at(now + ahead))
        assert response.status_code == 201, ahead
        assert response.get_json()["received_at"] == at(now)
    refused = post_event(client, occurred_at=at(now + timedelta(minutes=5, microseconds=1)))
    assert refused.status_code == 400
    assert refused.get_json()["error"]["field"] == "occurred_at"
    assert refused.get_json()["error"]["message"] == "must not be more than 300 seconds in the future"
    in_batch = client.post("/api/events/batch", json={"events": [
        {"user_id": 1, "action": "ok", "occurred_at": at(now + timedelta(minutes=5))},
        {"user_id": 1, "action": "ahead", "occurred_at": at(now + timedelta(minutes=5, microseconds=1))}]})
    assert in_batch.status_code == 400
    assert [(item["index"], item["field"]) for item in in_batch.get_json()["error"]["details"]] == [(1, "occurred_at")]
    assert count_rows(app, "events") == 3


# --- cursors of one list handed to the other ------------------------------------------------------

def test_metrics_page_through_users_of_one_window_and_refuse_an_events_cursor(client, runner):
    for user_id in (3, 1, 2):
        store(client, user_id, DAY0 + timedelta(hours=1))
    assert runner.invoke(args=["calculate-metrics"]).exit_code == 0
    first = client.get("/api/metrics?limit=2").get_json()
    second = client.get(f"/api/metrics?limit=2&cursor={first['next_cursor']}").get_json()
    assert [m["user_id"] for m in first["metrics"] + second["metrics"]] == [1, 2, 3]
    assert second["next_cursor"] is None
    refused = client.get(f"/api/events?cursor={first['next_cursor']}")
    assert refused.status_code == 400
    assert refused.get_json()["error"]["field"] == "cursor"
    assert refused.get_json()["error"]["message"] == "is not a cursor returned by this API"


# --- late events, as operators count them -----------------------------------------------------------

def late_events_counted(client) -> float:
    scrape = client.get("/internal/metrics").get_data(as_text=True)
    return float(re.search(r"^tracking_events_late_total (\S+)$", scrape, re.M).group(1))


def test_each_late_event_is_counted_once(client, clock):
    before = late_events_counted(client)
    assert post_event(client, occurred_at=at(clock.now - FOUR)).status_code == 201   # a window already closed
    assert post_event(client, occurred_at=at(clock.now)).status_code == 201          # the window still open
    response = client.post("/api/events/batch", json={"events": [
        {"user_id": 1, "action": "a", "occurred_at": at(clock.now - 2 * FOUR)}, {"user_id": 1, "action": "b"}]})
    assert response.status_code == 200
    assert late_events_counted(client) - before == 2
