"""The words of every error a client or an operator reads: the API's envelope and the start-up checks.

Status, code and field say what went wrong to a program; the message says it
to the person fixing the request. Each is pinned here, with the boundary
values that are still accepted, so a changed or lost message is noticed.
"""
from __future__ import annotations

import json
import time
import uuid

import pytest

from app.core.settings import ConfigError, Settings, load_config, sqlalchemy_url
from tests.helpers import count_rows

BIGINT = 2**63 - 1
GOOD = {"user_id": 1, "action": "page_view"}


def event(**changes) -> dict:
    return {**GOOD, **changes}


def error_of(response) -> tuple[int, str, str | None, str]:
    error = response.get_json()["error"]
    return response.status_code, error["code"], error["field"], error["message"]


@pytest.mark.parametrize(("body", "expected"), [
    ([1, 2], ("invalid_field", None, "request body must be a JSON object")),
    (None, ("invalid_field", None, "request body must be a JSON object")),
    (event(user_id=None), ("missing_field", "user_id", "is required")),
    (event(action=""), ("invalid_field", "action", "must not be empty")),
    (event(metdata={}), ("unknown_field", "metdata", "unknown field 'metdata'")),
    ({"action": "a"}, ("missing_field", "user_id", "is required")),
    (event(user_id="321"), ("invalid_field", "user_id", "must be a positive integer")),
    (event(user_id=0), ("invalid_field", "user_id", f"must be between 1 and {BIGINT}")),
    (event(user_id=BIGINT + 1), ("invalid_field", "user_id", f"must be between 1 and {BIGINT}")),
    (event(action=42), ("invalid_field", "action", "must be a string")),
    (event(action="  "), ("invalid_field", "action", "must not be empty")),
    (event(action="a" * 256), ("invalid_field", "action", "must be at most 255 characters")),
    (event(action="a\u0000"), ("invalid_field", "action", "must not contain NUL characters")),
    (event(metadata=[]), ("invalid_field", "metadata", "must be a JSON object")),
    (event(metadata={"k\u0000": 1}), ("invalid_field", "metadata", "keys must not contain NUL characters")),
    (event(metadata={"k": "\ud800"}),
     ("invalid_field", "metadata", "must not contain lone surrogate escapes such as \\ud800")),
    (event(occurred_at=123), ("invalid_field", "occurred_at", "must be an RFC 3339 timestamp string")),
    (event(occurred_at="yesterday"),
     ("invalid_field", "occurred_at", "must be an RFC 3339 timestamp such as 2025-10-23T13:07:00Z")),
    (event(occurred_at="2025-10-23T13:07:00"),
     ("invalid_field", "occurred_at", "must include a UTC offset, for example Z or +02:00")),
    (event(occurred_at="2025-02-30T00:00:00Z"), ("invalid_field", "occurred_at", "is not a real date and time")),
    (event(occurred_at="0001-01-01T00:00:00+01:00"), ("invalid_field", "occurred_at", "is out of range")),
    (event(id=5), ("invalid_field", "id", "must be a UUID string")),
    (event(id="nope"), ("invalid_field", "id", "must be a UUID such as 0b9f6c5e-3c1a-4d8e-9a57-1f2e3d4c5b6a")),
])
def test_event_errors_say_what_to_fix(client, app, body, expected):
    response = client.post("/api/event", data=json.dumps(body), content_type="application/json")
    assert error_of(response) == (400, *expected)
    assert count_rows(app, "events") == 0


@pytest.mark.parametrize(("text", "message"), [
    ('{"user_id": 1, "action": "a", "metadata": {"x": NaN}}', "request body is not valid JSON: NaN is not valid JSON"),
    ('{"user_id": 1, "action": "a", "metadata": {"x": 1e999}}',
     "request body is not valid JSON: number 1e999 is out of range"),
    ('{"user_id": 1, "action": "a", "metadata": {"x": 1234567890123456789e999}}',
     "request body is not valid JSON: number 1234567890123456789e is out of range"),
    ("   ", "request body is empty; a JSON object is expected"),
    (b'{"user_id": 1, "action": "\xff"}', "request body is not valid UTF-8"),
    ('{"user_id": 1, "action": "a", "metadata": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}}",
     "request body is nested too deeply"),
    # a lone surrogate sends the body to the standard library's decoder, which finds the nesting too deep
    ('{"user_id": 1, "action": "\\ud800", "metadata": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}}",
     "request body is nested too deeply"),
])
def test_malformed_bodies_say_why(client, text, message):
    response = client.post("/api/event", data=text, content_type="application/json")
    assert error_of(response) == (400, "malformed_json", None, message)


def test_metadata_may_take_exactly_its_byte_limit_when_encoded(client, app):
    padding = 16 * 1024 - len('{"k":""}')
    assert client.post("/api/event", json=event(metadata={"k": "x" * padding})).status_code == 201
    over = client.post("/api/event", json=event(metadata={"k": "x" * (padding + 1)}))
    assert error_of(over) == (400, "invalid_field", "metadata", "must be at most 16384 bytes when encoded")
    assert count_rows(app, "events") == 1


def test_ids_the_service_chooses_are_uuid7s_stamped_with_their_creation(client):
    before = time.time_ns() // 1_000_000
    ids = [uuid.UUID(client.post("/api/event", json=GOOD).get_json()["id"]) for _ in range(3)]
    after = time.time_ns() // 1_000_000
    for made in ids:
        assert (made.version, made.variant) == (7, uuid.RFC_4122)
        assert before <= made.int >> 80 <= after
    assert len(set(ids)) == 3


def test_the_largest_values_allowed_are_accepted(client):
    stored = client.post("/api/event", json=event(user_id=BIGINT, action="a" * 255)).get_json()
    assert (stored["user_id"], len(stored["action"])) == (BIGINT, 255)
    assert client.get("/api/events", query_string={"action": "a" * 255}).get_json()["events"][0]["action"] == "a" * 255
    empty_range = client.get("/api/events?from=2025-10-23T00:00:00Z&till=2025-10-23T00:00:00Z")
    assert (empty_range.status_code, empty_range.get_json()["events"]) == (200, [])


@pytest.mark.parametrize(("sent", "stored"), [
    ("2025-10-23t13:07:00.5z", "2025-10-23T13:07:00.500000Z"),
    ("2025-10-23T13:07:00.123456789Z", "2025-10-23T13:07:00.123456Z"),
    ("2025-10-23T15:07:00.05+02:00", "2025-10-23T13:07:00.050000Z"),
])
def test_timestamps_are_read_to_the_microsecond_in_any_accepted_spelling(client, sent, stored):
    assert client.post("/api/event", json=event(occurred_at=sent)).get_json()["occurred_at"] == stored


def test_times_are_written_in_utc_whatever_the_process_time_zone(client, monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Kathmandu")
    time.tzset()
    try:
        stored = client.post("/api/event", json=event(occurred_at="2025-10-23T15:07:00+02:00")).get_json()
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert stored["occurred_at"] == "2025-10-23T13:07:00.000000Z"


@pytest.mark.parametrize(("query", "expected"), [
    ("colour=red", ("unknown_parameter", "colour", "unknown query parameter 'colour'")),
    ("user_id=1&user_id=2", ("invalid_field", "user_id", "must be given once")),
    ("action=", ("invalid_field", "action", "must not be empty; leave the parameter out instead")),
    ("action=" + "a" * 513, ("invalid_field", "action", "must be at most 512 characters")),
    ("limit=0", ("invalid_field", "limit", "must be between 1 and 1000")),
    ("limit=ten", ("invalid_field", "limit", "must be a positive integer")),
    ("action=" + "a" * 256, ("invalid_field", "action", "must be at most 255 characters")),  # longer than any
    # integers in plain digits only: msgspec alone would read 1e3 as 1000 and 5.0 as 5
    ("user_id=1e3", ("invalid_field", "user_id", "must be a positive integer")),
    ("limit=5.0", ("invalid_field", "limit", "must be a positive integer")),
    ("user_id=-5", ("invalid_field", "user_id", "must be a positive integer")),
    ("user_id=9223372036854775808", ("invalid_field", "user_id", "must be between 1 and 9223372036854775807")),
    ("limit=1001", ("invalid_field", "limit", "must be between 1 and 1000")),
    ("till=yesterday", ("invalid_field", "till", "must be an RFC 3339 timestamp such as 2025-10-23T13:07:00Z")),
    ("cursor=abc", ("invalid_field", "cursor", "is not a cursor returned by this API")),
    ("from=2025-10-24T00:00:00Z&till=2025-10-23T00:00:00Z", ("invalid_field", "till", "must not be before `from`")),
    ("p" * 512 + "=1", ("unknown_parameter", "p" * 512, f"unknown query parameter {'p' * 512!r}")),
    ("p" * 513 + "=1", ("unknown_parameter", "p" * 40 + "\u2026", "parameter names must be at most 512 characters")),
    ("meta.=x", ("invalid_field", "meta.", "needs a metadata key: meta.KEY=VALUE")),
    ("meta.k%00=x", ("invalid_field", "meta.k\x00", "metadata keys must not contain NUL characters")),
    ("&".join(f"meta.k{i}=v" for i in range(11)),
     ("too_many_filters", "meta.k10", "at most 10 `meta.KEY=VALUE` filters are allowed per request")),
])
def test_list_errors_say_what_to_fix(client, query, expected):
    assert error_of(client.get(f"/api/events?{query}")) == (400, *expected)


def test_an_events_cursor_is_not_a_metrics_cursor(client):
    for i in range(2):
        client.post("/api/event", json=event(occurred_at=f"2025-10-23T13:07:0{i}Z"))
    cursor = client.get("/api/events?limit=1").get_json()["next_cursor"]
    assert error_of(client.get(f"/api/metrics?cursor={cursor}")) == (
        400, "invalid_field", "cursor", "is not a cursor returned by this API")


@pytest.mark.parametrize(("body", "expected"), [
    ({"evts": []}, ("unknown_field", "evts", "unknown field 'evts'")),
    ({}, ("missing_field", "events", "is required")),
    ([], ("invalid_field", "events", 'request body must be an object {"events": [...]}')),
    ({"events": {}}, ("invalid_field", "events", "must be a non-empty array of events")),
    ({"events": []}, ("invalid_field", "events", "must be a non-empty array of events")),
    ({"events": [GOOD] * 1001}, ("batch_too_large", "events", "must hold at most 1000 events")),
    # the events' faults are named before the envelope's
    ({"events": [event(user_id=0)] + [GOOD] * 1000},
     ("invalid_batch", "events", "1 of 1001 events are invalid; nothing was stored")),
    ({"events": [event(action="")], "extra": 1}, ("invalid_batch", "events", "1 of 1 events are invalid; nothing was stored")),
    ({"events": [GOOD], "extra": 1}, ("unknown_field", "extra", "unknown field 'extra'")),
])
def test_batch_errors_say_what_to_fix(client, body, expected):
    assert error_of(client.post("/api/events/batch", json=body)) == (400, *expected)


def test_an_event_a_number_out_of_range_breaks_is_named_among_the_others(client):
    body = b'{"events": [{"user_id": 1, "action": "a", "metadata": {"n": 1e999}}, {"user_id": "x", "action": "a"}]}'
    response = client.post("/api/events/batch", data=body, content_type="application/json")
    assert error_of(response) == (400, "invalid_batch", "events", "2 of 2 events are invalid; nothing was stored")
    assert response.get_json()["error"]["details"] == [
        {"index": 0, "field": None, "message": "request body is not valid JSON: number 1e999 is out of range"},
        {"index": 1, "field": "user_id", "message": "must be a positive integer"}]


def test_a_batch_names_each_bad_item_and_each_reused_id(client, app):
    response = client.post("/api/events/batch", json={"events": [GOOD, event(user_id=0)]})
    assert error_of(response) == (400, "invalid_batch", "events", "1 of 2 events are invalid; nothing was stored")
    assert response.get_json()["error"]["details"] == [
        {"index": 1, "field": "user_id", "message": f"must be between 1 and {BIGINT}"}]
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    client.post("/api/events/batch", json={"events": [event(id=first), event(id=second)]})
    reused = client.post("/api/events/batch", json={"events": [event(id=first, action="b"), event(id=second, action="c")]})
    assert error_of(reused) == (409, "id_conflict", "id", "2 events reuse an id with different content")
    assert [item["index"] for item in reused.get_json()["error"]["details"]] == [0, 1]
    single = client.post("/api/event", json=event(id=first, action="b"))
    assert error_of(single) == (409, "id_conflict", "id", "an event with this id already exists with different content")
    assert "details" not in single.get_json()["error"] or single.get_json()["error"]["details"] is None
    assert count_rows(app, "events") == 2


@pytest.mark.parametrize(("body", "expected"), [
    ({"from": "2025-10-20T00:00:00Z"}, ("invalid_field", "till", "give both `from` and `till`, or neither")),
    ({"till": "2025-10-20T00:00:00Z"}, ("invalid_field", "from", "give both `from` and `till`, or neither")),
    ({"from": "2025-10-20T00:00:00Z", "till": "soon"},
     ("invalid_field", "till", "must be an RFC 3339 timestamp such as 2025-10-23T13:07:00Z")),
    ({"from": 1, "till": 2}, ("invalid_field", "from", "must be an RFC 3339 timestamp string")),
    ([], ("invalid_field", None, "request body must be a JSON object")),
    (["\ud800"], ("invalid_field", None, "request body must be a JSON object")),
    ({"to": "2025-10-20T00:00:00Z"}, ("unknown_field", "to", "unknown field 'to'")),
])
def test_calculation_range_errors_say_what_to_fix(client, body, expected):
    assert error_of(client.post("/api/metrics", json=body)) == (400, *expected)


@pytest.mark.parametrize("body", [b"", b"  ", b"null", b"{}"])
def test_no_calculation_range_is_every_pending_window(client, body):
    """The original's clients post no body; an empty object or JSON `null` says the same."""
    response = client.post("/api/metrics", data=body, content_type="application/json")
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["job"]["params"] == {"start": None, "end": None, "trigger": "manual"}


@pytest.mark.parametrize(("path", "field", "message"), [
    ("/api/event", None, "request body must be a JSON object"),
    ("/api/events/batch", "events", 'request body must be an object {"events": [...]}'),
])
def test_a_wrong_shape_is_said_before_a_lone_surrogate_inside_it(client, path, field, message):
    """The document's shape is judged at its first byte, before the string msgspec cannot read."""
    response = client.post(path, data=b'["\\ud800"]', content_type="application/json")
    assert error_of(response) == (400, "invalid_field", field, message)


CONFIG = {"DATABASE_URL": "postgresql://db/tracking"}


@pytest.mark.parametrize(("config", "message"), [
    ({}, "DATABASE_URL is not set (make run sets it for you; beside a running make run, use make cli)."),
    ({"METRICS_WINDOW_HOURS": 5}, "METRICS_WINDOW_HOURS=5 must divide 24"),
    ({"LOG_FORMAT": "xml"}, "LOG_FORMAT='xml' must be one of kv, json"),
    ({"APP_ENV": "production", "SECRET_KEY": "", "ACCESS_CONTROL": "off"},
     "SECRET_KEY is empty: the dashboard's sessions (and CSRF tokens) need one"),
    ({"APP_ENV": "production", "ACCESS_CONTROL": "off"},
     "SECRET_KEY must be set to a secret value when APP_ENV=production (the default is public, so anyone could "
     "sign a session cookie); make one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"),
    ({"ACCESS_CONTROL": "maybe"}, "ACCESS_CONTROL='maybe' must be auto, on or off"),
    ({"ACCESS_CONTROL": "on", "SECRET_KEY": "a-real-secret"}, "access control is on but API_TOKENS_FULL is not set; ADMIN_PASSWORD_HASH is not set "
                               "(the CLI's `hash-password` command makes one) (or set ACCESS_CONTROL=off)"),
])
def test_settings_that_cannot_work_are_refused_with_a_message_naming_the_variable(config, message):
    mapping = {**(CONFIG if config else {}), **config}
    with pytest.raises(ConfigError) as refused:
        Settings.from_mapping(mapping)
    assert str(refused.value) == message


def test_an_empty_variable_means_its_default_and_urls_get_the_psycopg_driver():
    assert load_config({"PORT": "", "LOG_FORMAT": ""})["PORT"] == 8080
    assert sqlalchemy_url("postgres://u@db/t") == "postgresql+psycopg://u@db/t"
    assert sqlalchemy_url("postgresql://u@db/t") == "postgresql+psycopg://u@db/t"
    assert sqlalchemy_url("postgresql+psycopg://u@db/t") == "postgresql+psycopg://u@db/t"


@pytest.mark.parametrize(("config", "message"), [
    ({"METRICS_CHUNK_WINDOWS": 0}, "METRICS_CHUNK_WINDOWS=0 must be at least 1"),
    ({"METRICS_MAX_RANGE_DAYS": 0}, "METRICS_MAX_RANGE_DAYS=0 must be at least 1"),
    ({"EVENT_MAX_AGE_DAYS": 0}, "EVENT_MAX_AGE_DAYS=0 must be at least 1"),
    ({"LIST_MAX_METADATA_FILTERS": 0}, "LIST_MAX_METADATA_FILTERS=0 must be at least 1"),
    ({"EVENTS_RETENTION_DAYS": 0}, "EVENTS_RETENTION_DAYS=0 must be at least 1 (leave it unset to keep everything)"),
    ({"METRICS_RETENTION_DAYS": 0}, "METRICS_RETENTION_DAYS=0 must be at least 1 (leave it unset to keep everything)"),
    ({"EVENTS_PARTITIONS_AHEAD_DAYS": 0}, "EVENTS_PARTITIONS_AHEAD_DAYS=0 must be at least 1"),
    ({"SESSION_LIFETIME_SECONDS": 0}, "SESSION_LIFETIME_SECONDS=0 must be at least 1 second"),
    ({"SESSION_IDLE_SECONDS": 0}, "SESSION_IDLE_SECONDS=0 must be at least 1 second"),
    ({"TRUSTED_PROXIES": -1}, "TRUSTED_PROXIES=-1 must be 0 (trust none) or more"),
    ({"TRUSTED_PROXY_ADDRESSES": "10.0.0.2,nginx"},
     "TRUSTED_PROXY_ADDRESSES='10.0.0.2,nginx': 'nginx' does not appear to be an IPv4 or IPv6 network"),
    ({"SIGN_IN_FREE_FAILURES": 0}, "SIGN_IN_FREE_FAILURES=0 must be at least 1"),
    ({"SIGN_IN_MAX_DELAY_SECONDS": 0}, "SIGN_IN_MAX_DELAY_SECONDS=0 must be at least 1"),
    ({"LONG_READS_PER_PROCESS": 4},
     "LONG_READS_PER_CLIENT=1 and LONG_READS_PER_PROCESS=4 must satisfy 1 <= per client <= per process < "
     "WEB_THREADS=4, so exports never hold every thread"),
    ({"LONG_READS_PER_PROCESS": 1, "LONG_READS_PER_CLIENT": 2},
     "LONG_READS_PER_CLIENT=2 and LONG_READS_PER_PROCESS=1 must satisfy 1 <= per client <= per process < "
     "WEB_THREADS=4, so exports never hold every thread"),
    ({"DATABASE_READ_MAX_LAG_SECONDS": 0},
     "DATABASE_READ_MAX_LAG_SECONDS must be above 0 and DATABASE_READ_CHECK_SECONDS at least 0"),
    ({"DATABASE_READ_CHECK_SECONDS": -0.5},
     "DATABASE_READ_MAX_LAG_SECONDS must be above 0 and DATABASE_READ_CHECK_SECONDS at least 0"),
    ({"CORS_ALLOWED_ORIGINS": "http://localhost:3000;https://example.com/app"},
     "CORS_ALLOWED_ORIGINS: 'https://example.com/app' is not an origin such as http://localhost:3000 "
     "(scheme, host and optional port; no path, no wildcard)"),
    ({"ACCESS_CONTROL": "on"},
     "SECRET_KEY must be set to a secret value when access control is on (the default is public, so anyone could "
     "sign a session cookie); make one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"),
])
def test_numeric_and_origin_settings_out_of_range_are_refused_naming_the_variable_and_bound(config, message):
    with pytest.raises(ConfigError) as refused:
        Settings.from_mapping({**CONFIG, **config})
    assert str(refused.value) == message


def test_the_smallest_values_each_start_up_check_allows_are_accepted():
    smallest = {"METRICS_CHUNK_WINDOWS": 1, "METRICS_MAX_RANGE_DAYS": 1, "EVENT_MAX_AGE_DAYS": 1,
                "LIST_MAX_METADATA_FILTERS": 1, "EVENTS_RETENTION_DAYS": 1, "METRICS_RETENTION_DAYS": 1,
                "EVENTS_PARTITIONS_AHEAD_DAYS": 1, "SESSION_LIFETIME_SECONDS": 1, "SESSION_IDLE_SECONDS": 1,
                "TRUSTED_PROXIES": 0, "DATABASE_READ_MAX_LAG_SECONDS": 0.5, "DATABASE_READ_CHECK_SECONDS": 0,
                "SIGN_IN_FREE_FAILURES": 1, "SIGN_IN_MAX_DELAY_SECONDS": 1, "LONG_READS_PER_CLIENT": 1,
                "LONG_READS_PER_PROCESS": 3}  # 3 of WEB_THREADS=4: the most that leaves writes a thread
    settings = Settings.from_mapping({**CONFIG, **smallest})
    assert {key: getattr(settings, key.lower()) for key in smallest} == smallest


def test_cors_origins_are_read_from_a_semicolon_separated_list():
    settings = Settings.from_mapping({**CONFIG, "CORS_ALLOWED_ORIGINS": " http://localhost:3000;;https://[::1]:8443 ;"})
    assert settings.cors_origins == ("http://localhost:3000", "https://[::1]:8443")
    assert Settings.from_mapping(CONFIG).cors_origins == ()


def test_ten_metadata_filters_the_default_bound_are_accepted(client):
    query = "&".join(f"meta.k{i}=v" for i in range(10))
    assert client.get(f"/api/events?{query}").get_json() == {"events": [], "next_cursor": None}


def test_integers_in_a_query_are_read_as_digits_leading_zeros_and_all(client):
    client.post("/api/event", json=event(user_id=7))
    found = client.get("/api/events?user_id=007&limit=01").get_json()
    assert [item["user_id"] for item in found["events"]] == [7] and found["next_cursor"] is None


def test_metrics_declare_no_metadata_filter_so_one_is_an_unknown_parameter(client):
    assert error_of(client.get("/api/metrics?meta.page=/home")) == (
        400, "unknown_parameter", "meta.page", "unknown query parameter 'meta.page'")
    assert client.get("/api/events/export?meta.page=/home").status_code == 200


@pytest.mark.parametrize("spelt", ["yes", "True", "1"])
def test_include_open_must_be_spelt_true_or_false(client, spelt):
    assert error_of(client.get(f"/api/metrics?include_open={spelt}")) == (
        400, "invalid_field", "include_open", "must be true or false")


def test_a_calculation_range_of_exactly_the_bound_is_queued_and_a_second_more_is_refused(client):
    longest = client.post("/api/metrics", json={"from": "2025-01-01T00:00:00Z", "till": "2026-01-02T00:00:00Z"})
    assert longest.status_code == 202
    over = client.post("/api/metrics", json={"from": "2025-01-01T00:00:00Z", "till": "2026-01-02T00:00:01Z"})
    assert error_of(over) == (400, "invalid_field", "till", "must be at most 366 days after `from`")


@pytest.fixture
def age_bounds(app_config: dict[str, object]) -> None:
    """Short bounds on an event's age, so the boundary sits a known distance before the clock's now."""
    app_config.update({"EVENT_MAX_AGE_DAYS": 30, "EVENTS_RETENTION_DAYS": 40})


@pytest.fixture
def retention_bound(app_config: dict[str, object]) -> None:
    app_config.update({"EVENT_MAX_AGE_DAYS": 30, "EVENTS_RETENTION_DAYS": 7})


def test_an_event_exactly_max_age_old_is_stored_and_one_microsecond_older_is_refused(age_bounds, clock, client, app):
    """The clock's now is 2025-10-23T13:07:00Z; EVENT_MAX_AGE_DAYS=30 puts the bound at 2025-09-23T13:07:00Z."""
    assert client.post("/api/event", json=event(occurred_at="2025-09-23T13:07:00Z")).status_code == 201
    older = client.post("/api/event", json=event(occurred_at="2025-09-23T13:06:59.999999Z"))
    assert error_of(older) == (400, "invalid_field", "occurred_at",
                               "must not be more than 30 days in the past (not before 2025-09-23T13:07:00.000000Z)")
    assert count_rows(app, "events") == 1


def test_an_event_exactly_retention_old_is_stored_and_one_microsecond_older_is_refused(retention_bound, clock,
                                                                                       client, app):
    """EVENTS_RETENTION_DAYS=7 with the clock at 2025-10-23T13:07:00Z: kept from 2025-10-16T13:07:00Z on."""
    assert client.post("/api/event", json=event(occurred_at="2025-10-16T13:07:00Z")).status_code == 201
    older = client.post("/api/event", json=event(occurred_at="2025-10-16T13:06:59.999999Z"))
    assert error_of(older) == (400, "invalid_field", "occurred_at",
                               "must be at most 7 days old: events are kept for 7 days (EVENTS_RETENTION_DAYS)")
    assert client.post("/api/event", json=event(occurred_at="2025-10-23T13:07:00Z")).status_code == 201
    assert count_rows(app, "events") == 2
