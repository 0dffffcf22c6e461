"""Bounds on the work one request can cause: event age, calculation range, metadata filters.

An ingest-only client must not be able to make the calculation redo thousands of
old windows, and a caller must not queue a calculation from year 1 or send a
list query with hundreds of metadata filters. Each bound is a setting with a
safe default, enforced at every entry point (API, CLI) with a 400 that names
the field and the bound, and with nothing stored or queued. So is the span
every instant must lie in, from 1970-01-01 to 366 days after now: beyond it no
event can lie, and near the calendar's end a window's arithmetic overflowed.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from app import create_app
from app.core.settings import ConfigError
from app.core.times import format_rfc3339
from app.extensions import runtime, settings
from app.jobs.queue import calculation_queue
from tests.helpers import count_rows, post_event, separate_app

UTC = timezone.utc


@pytest.fixture
def app_config(app_config: dict[str, object]) -> dict[str, object]:
    """The suite's settings with the event age bound back at its default."""
    config = dict(app_config)
    config.pop("EVENT_MAX_AGE_DAYS")
    return config


def days_ago(days: float) -> str:
    return format_rfc3339(datetime.now(UTC) - timedelta(days=days))


def test_an_event_older_than_the_bound_is_refused_naming_the_field_and_the_bound(app, client):
    with app.app_context():
        assert settings().event_max_age_days == 365
    assert post_event(client, occurred_at=days_ago(364)).status_code == 201
    response = post_event(client, occurred_at=days_ago(366))
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["field"] == "occurred_at"
    assert "365 days in the past" in error["message"]
    assert count_rows(app, "events") == 1
    assert post_event(client, occurred_at="0001-01-01T00:00:00Z").status_code == 400


def test_a_batch_of_events_in_old_windows_is_refused_whole_and_marks_no_window_stale(app, client):
    """The attack that made 5,000 stale windows in half a second: now nothing is stored or marked."""
    events = [{"user_id": 1, "action": "a", "occurred_at": days_ago(400 + i)} for i in range(1000)]
    events[500] = {"user_id": 1, "action": "a", "occurred_at": days_ago(1)}
    response = client.post("/api/events/batch", json={"events": events})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_batch"
    assert len(error["details"]) == 999
    assert (error["details"][0]["index"], error["details"][0]["field"]) == (0, "occurred_at")
    assert "365 days in the past" in error["details"][0]["message"]
    assert 500 not in {detail["index"] for detail in error["details"]}
    assert count_rows(app, "events") == 0
    assert count_rows(app, "metrics_windows") == 0


def test_the_event_age_bound_follows_its_setting(app_config):
    with separate_app({**app_config, "EVENT_MAX_AGE_DAYS": 30}) as app:
        client = app.test_client()
        assert post_event(client, occurred_at=days_ago(29)).status_code == 201
        response = post_event(client, occurred_at=days_ago(31))
        assert response.status_code == 400
        assert "30 days in the past" in response.get_json()["error"]["message"]


def test_a_calculation_range_longer_than_the_bound_is_refused_and_nothing_is_queued(app, client):
    with app.app_context():
        assert settings().metrics_max_range_days == 366
    response = client.post("/api/metrics", json={"from": "0001-01-01T00:00:00Z", "till": "2026-01-01T00:00:00Z"})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert (error["field"], error["message"]) == ("till", "must be at most 366 days after `from`")
    just_over = client.post("/api/metrics", json={"from": "2025-01-01T00:00:00Z", "till": "2026-01-02T00:00:01Z"})
    assert just_over.status_code == 400
    with app.app_context():
        assert len(calculation_queue(runtime().background_redis, settings().redis_namespace)) == 0
    longest = client.post("/api/metrics", json={"from": "2025-01-01T00:00:00Z", "till": "2026-01-02T00:00:00Z"})
    assert longest.status_code == 202


def test_the_cli_refuses_a_range_longer_than_the_bound(app, runner):
    result = runner.invoke(args=["calculate-metrics", "--from", "0001-01-01T00:00:00Z",
                                 "--till", "2026-01-01T00:00:00Z"])
    assert result.exit_code != 0
    assert "--till" in result.output and "366 days" in result.output
    assert count_rows(app, "calculation_runs") == 0


# The span around the `clock` fixture's now, 2025-10-23T13:07:00Z, as the errors state its ends.
BEFORE_THE_SPAN = "must not be before 1970-01-01T00:00:00.000000Z"
AFTER_THE_SPAN = "must not be after 2026-10-24T13:07:00.000000Z (366 days from now)"


@pytest.mark.parametrize(("path", "field", "message"), [
    ("/api/events?from=1969-12-31T23:59:59.999999Z", "from", BEFORE_THE_SPAN),
    ("/api/events?till=0001-01-01T00:00:00Z", "till", BEFORE_THE_SPAN),
    ("/api/events?till=2026-10-24T13:07:00.000001Z", "till", AFTER_THE_SPAN),
    ("/api/events/export?from=9999-12-31T23:59:59.999999Z", "from", AFTER_THE_SPAN),
    ("/api/metrics?from=0001-01-01T00:00:00Z&till=0001-01-01T04:00:00Z", "from", BEFORE_THE_SPAN),
    ("/api/metrics?include_open=true&till=9999-12-31T23:59:59Z", "till", AFTER_THE_SPAN),
])
def test_a_list_range_outside_the_span_is_refused_naming_the_field_and_the_bound(clock, client, path, field,
                                                                                   message):
    response = client.get(path)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert (error["code"], error["field"], error["message"]) == ("invalid_field", field, message)


def test_a_list_range_may_take_the_whole_span(clock, client):
    whole = "from=1970-01-01T00:00:00Z&till=2026-10-24T13:07:00Z"
    assert client.get(f"/api/events?{whole}").status_code == 200
    assert client.get(f"/api/metrics?include_open=true&{whole}").get_json()["open_windows"] != []


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"from": "9999-12-01T00:00:00Z", "till": "9999-12-31T00:00:00Z"}, "from", AFTER_THE_SPAN),
    ({"from": "0001-01-01T00:00:00Z", "till": "0001-12-31T00:00:00Z"}, "from", BEFORE_THE_SPAN),
    ({"from": "1969-12-31T23:59:59.999999Z", "till": "1970-01-01T04:00:00Z"}, "from", BEFORE_THE_SPAN),
    ({"from": "2026-10-01T00:00:00Z", "till": "2026-10-24T13:07:00.000001Z"}, "till", AFTER_THE_SPAN),
])
def test_a_calculation_range_outside_the_span_is_refused_and_nothing_is_queued(clock, app, client, body, field,
                                                                                message):
    """Year 9999 was queued and failed on every retry; year 1 filled the ledger with 2,184 windows."""
    response = client.post("/api/metrics", json=body)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert (error["code"], error["field"], error["message"]) == ("invalid_field", field, message)
    with app.app_context():
        assert len(calculation_queue(runtime().background_redis, settings().redis_namespace)) == 0
    assert count_rows(app, "metrics_windows") == 0


@pytest.mark.parametrize("body", [{"from": "1970-01-01T00:00:00Z", "till": "1970-01-02T00:00:00Z"},
                                  {"from": "2026-10-01T00:00:00Z", "till": "2026-10-24T13:07:00Z"}])
def test_a_calculation_range_at_the_ends_of_the_span_is_queued(clock, client, body):
    assert client.post("/api/metrics", json=body).status_code == 202


@pytest.mark.parametrize(("start", "end", "bound"), [
    ("9999-12-01T00:00:00Z", "9999-12-31T00:00:00Z", "2026-10-24T13:07:00.000000Z"),
    ("0001-01-01T00:00:00Z", "0001-12-31T00:00:00Z", "1970-01-01T00:00:00.000000Z"),
])
def test_the_cli_refuses_a_range_outside_the_span(clock, app, runner, start, end, bound):
    result = runner.invoke(args=["calculate-metrics", "--from", start, "--till", end])
    assert result.exit_code != 0
    assert "--from" in result.output and bound in result.output
    assert count_rows(app, "calculation_runs") == 0
    assert count_rows(app, "metrics_windows") == 0


def meta_query(count: int) -> str:
    return "&".join(f"meta.k{i}=v{i}" for i in range(count))


@pytest.mark.parametrize("path", ["/api/events", "/api/events/export"])
def test_more_metadata_filters_than_the_bound_are_refused(client, path):
    assert client.get(f"{path}?{meta_query(10)}").status_code == 200
    response = client.get(f"{path}?{meta_query(300)}")
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert (error["code"], error["field"]) == ("too_many_filters", "meta.k10")
    assert "at most 10" in error["message"]


def test_the_metadata_filter_bound_follows_its_setting(app_config):
    with separate_app({**app_config, "LIST_MAX_METADATA_FILTERS": 2}) as app:
        client = app.test_client()
        assert client.get(f"/api/events?{meta_query(2)}").status_code == 200
        assert client.get(f"/api/events?{meta_query(3)}").get_json()["error"]["field"] == "meta.k2"


@pytest.mark.parametrize("name", ["EVENT_MAX_AGE_DAYS", "METRICS_MAX_RANGE_DAYS", "LIST_MAX_METADATA_FILTERS",
                                  "METRICS_CHUNK_WINDOWS"])
def test_a_bound_below_one_stops_the_start_naming_the_variable(app_config, name):
    """A zero would refuse every event or filter, or (chunks of no window) never compute anything."""
    with pytest.raises(ConfigError, match=f"{name}=0 must be at least 1"):
        create_app({**app_config, name: 0})
