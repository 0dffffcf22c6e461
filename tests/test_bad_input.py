"""The bad-input table: one row per case, each a documented 4xx in the envelope, and nothing stored."""
from __future__ import annotations

import json
import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from app.core.times import format_rfc3339
from tests.helpers import count_rows

GOOD = {"user_id": 1, "action": "page_view", "metadata": {"page": "/home"}}
NOW_PLUS_HOUR = format_rfc3339(datetime.now(timezone.utc) + timedelta(hours=1))
IN_300_DAYS, IN_380_DAYS = (format_rfc3339(datetime.now(timezone.utc) + timedelta(days=days)) for days in (300, 380))
DEEP = "[" * 100_000 + "]" * 100_000  # 200 KB of valid JSON, deeper than any stack


@dataclass(frozen=True)
class Case:
    name: str
    status: int
    code: str | None = None
    field: str | None = None
    method: str = "POST"
    path: str = "/api/event"
    body: bytes | None = None
    content_type: str = "application/json"
    environ: dict[str, Any] = dataclasses.field(default_factory=dict)


def event(**changes: Any) -> bytes:
    body = {**GOOD, **changes}
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def raw(text: str) -> bytes:
    return text.encode()


CASES = [
    Case("malformed JSON", 400, "malformed_json", body=b'{"user_id": 1, "action": '),
    Case("array instead of object", 400, "invalid_field", body=b"[1, 2]"),
    Case("string instead of object", 400, "invalid_field", body=b'"page_view"'),
    Case("empty body", 400, "malformed_json", body=b""),
    Case("user_id missing", 400, "missing_field", "user_id", body=event(user_id=...)),
    Case("user_id null", 400, "missing_field", "user_id", body=event(user_id=None)),
    Case("action missing", 400, "missing_field", "action", body=event(action=...)),
    Case("action null", 400, "missing_field", "action", body=event(action=None)),
    Case("user_id bool", 400, "invalid_field", "user_id", body=event(user_id=True)),
    Case("user_id float", 400, "invalid_field", "user_id", body=event(user_id=1.0)),
    Case("user_id string", 400, "invalid_field", "user_id", body=event(user_id="321")),
    Case("user_id zero", 400, "invalid_field", "user_id", body=event(user_id=0)),
    Case("user_id negative", 400, "invalid_field", "user_id", body=event(user_id=-5)),
    Case("user_id beyond 2^63-1", 400, "invalid_field", "user_id", body=event(user_id=2**63)),
    Case("user_id huge", 400, "invalid_field", "user_id", body=raw('{"user_id": 1' + "0" * 400 + ', "action": "a"}')),
    Case("action empty", 400, "invalid_field", "action", body=event(action="")),
    Case("action blank", 400, "invalid_field", "action", body=event(action="   ")),
    Case("action too long", 400, "invalid_field", "action", body=event(action="a" * 256)),
    Case("action not a string", 400, "invalid_field", "action", body=event(action=42)),
    Case("metadata not an object", 400, "invalid_field", "metadata", body=event(metadata=["page"])),
    Case("metadata null", 400, "invalid_field", "metadata", body=event(metadata=None)),
    Case("metadata over 16 KiB", 400, "invalid_field", "metadata", body=event(metadata={"x": "y" * 16384})),
    Case("metadata nested 1,000 levels", 400, None, None,
         body=raw('{"user_id": 1, "action": "a", "metadata": {"x": ' + "[" * 1000 + "]" * 1000 + "}}")),
    Case("metadata NaN", 400, "malformed_json", body=raw('{"user_id": 1, "action": "a", "metadata": {"x": NaN}}')),
    Case("metadata infinite number", 400, "malformed_json",
         body=raw('{"user_id": 1, "action": "a", "metadata": {"x": 1e999}}')),
    Case("NUL in action", 400, "invalid_field", "action", body=event(action="a\u0000b")),
    Case("NUL in metadata value", 400, "invalid_field", "metadata", body=event(metadata={"k": "\u0000"})),
    Case("NUL in metadata key", 400, "invalid_field", "metadata", body=event(metadata={"\u0000": 1})),
    Case("NUL deep in metadata", 400, "invalid_field", "metadata", body=event(metadata={"a": [{"b": "\u0000"}]})),
    Case("NUL in occurred_at", 400, "invalid_field", "occurred_at", body=event(occurred_at="2025-10-23T13:07:00Z\u0000")),
    Case("NUL in id", 400, "invalid_field", "id", body=event(id="\u0000")),
    Case("lone surrogate in action", 400, "invalid_field", "action", body=raw('{"user_id": 1, "action": "a\\ud800"}')),
    Case("lone surrogate in metadata", 400, "invalid_field", "metadata",
         body=raw('{"user_id": 1, "action": "a", "metadata": {"k": "\\udc00"}}')),
    Case("lone surrogate in a metadata key", 400, "invalid_field", "metadata",
         body=raw('{"user_id": 1, "action": "a", "metadata": {"\\ud800": 1}}')),
    Case("invalid UTF-8", 400, "malformed_json", body=b'{"user_id": 1, "action": "\xff\xfe"}'),
    Case("occurred_at without offset", 400, "invalid_field", "occurred_at", body=event(occurred_at="2025-10-23T13:07:00")),
    Case("occurred_at impossible date", 400, "invalid_field", "occurred_at",
         body=event(occurred_at="2025-10-257T22:07:00.000Z")),
    Case("occurred_at February 30", 400, "invalid_field", "occurred_at", body=event(occurred_at="2025-02-30T10:00:00Z")),
    Case("occurred_at far future", 400, "invalid_field", "occurred_at", body=event(occurred_at=NOW_PLUS_HOUR)),
    Case("occurred_at a number", 400, "invalid_field", "occurred_at", body=event(occurred_at=1700000000)),
    Case("id not a UUID", 400, "invalid_field", "id", body=event(id="not-a-uuid")),
    Case("unknown field (rejected)", 400, "unknown_field", "colour", body=event(colour="red")),
    Case("form content type", 415, "unsupported_media_type", body=b"user_id=1&action=a",
         content_type="application/x-www-form-urlencoded"),
    Case("XML content type", 415, "unsupported_media_type", body=b"<event/>", content_type="application/xml"),
    Case("plain text that is not JSON", 400, "malformed_json", body=b"user_id=1", content_type="text/plain"),
    Case("body over 1 MiB", 413, "payload_too_large", body=event(metadata={"x": "y" * (1024 * 1024)})),
    Case("Content-Length shorter than the body", 400, "malformed_json", body=event(),
         environ={"CONTENT_LENGTH": "10"}),
    Case("Content-Length claiming more than 1 MiB", 413, "payload_too_large", body=event(),
         environ={"CONTENT_LENGTH": str(2 * 1024 * 1024)}),
    Case("batch over 1,000 items", 400, "batch_too_large", "events", path="/api/events/batch",
         body=json.dumps({"events": [GOOD] * 1001}).encode()),
    Case("batch with an invalid item", 400, "invalid_batch", "events", path="/api/events/batch",
         body=json.dumps({"events": [GOOD, {**GOOD, "user_id": 0}]}).encode()),
    Case("batch not an object", 400, "invalid_field", "events", path="/api/events/batch", body=b"[]"),
    Case("batch item nested 100,000 levels", 400, "malformed_json", path="/api/events/batch",
         body=raw('{"events": [{"user_id": 1, "action": "a", "metadata": {"a": ' + DEEP + "}}]}")),
    Case("calculation in year 9999", 400, "invalid_field", "from", path="/api/metrics",
         body=json.dumps({"from": "9999-12-01T00:00:00Z", "till": "9999-12-31T00:00:00Z"}).encode()),
    Case("calculation in year 1", 400, "invalid_field", "from", path="/api/metrics",
         body=json.dumps({"from": "0001-01-01T00:00:00Z", "till": "0001-12-31T00:00:00Z"}).encode()),
    Case("calculation till more than a year ahead", 400, "invalid_field", "till", path="/api/metrics",
         body=json.dumps({"from": IN_300_DAYS, "till": IN_380_DAYS}).encode()),
    Case("calculation nested 100,000 levels", 400, "malformed_json", path="/api/metrics", body=raw(DEEP)),
]

QUERY_CASES = [
    ("repeated parameter", "/api/events?user_id=1&user_id=2", "user_id"),
    ("empty parameter", "/api/events?user_id=", "user_id"),
    ("overlong parameter", "/api/events?action=" + "a" * 600, "action"),
    ("unknown parameter", "/api/events?colour=red", "colour"),
    ("from after till", "/api/events?from=2025-10-24T00:00:00Z&till=2025-10-23T00:00:00Z", "till"),
    ("impossible till", "/api/events?till=2025-10-257T22:07:00.000Z", "till"),
    ("negative user id", "/api/events?user_id=-1", "user_id"),
    ("limit over 1000", "/api/events?limit=1001", "limit"),
    ("forged cursor", "/api/events?cursor=bm90LWEtY3Vyc29y", "cursor"),
    ("NUL in parameter", "/api/events?action=a%00b", "action"),
    ("metrics repeated", "/api/metrics?from=2025-10-23T00:00:00Z&from=2025-10-24T00:00:00Z", "from"),
    ("metrics from after till", "/api/metrics?from=2025-10-24T00:00:00Z&till=2025-10-23T00:00:00Z", "till"),
    ("metrics empty", "/api/metrics?till=", "till"),
    ("from before 1970", "/api/events?from=1969-12-31T23:59:59Z", "from"),
    ("export till in year 9999", "/api/events/export?till=9999-12-31T23:59:59Z", "till"),
    ("metrics from in year 1", "/api/metrics?from=0001-01-01T00:00:00Z", "from"),
    ("open windows till the calendar's last window", "/api/metrics?include_open=true&till=9999-12-31T23:59:59Z",
     "till"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_body(client, app, case):
    response = client.open(case.path, method=case.method, data=case.body, content_type=case.content_type or None,
                           environ_overrides=case.environ)
    assert response.status_code == case.status, response.get_data(as_text=True)[:300]
    error = response.get_json()["error"]
    assert error["message"]
    if case.code:
        assert error["code"] == case.code
    if case.field:
        assert error["field"] == case.field
    assert count_rows(app, "events") == 0


@pytest.mark.parametrize(("name", "url", "field"), QUERY_CASES, ids=[c[0] for c in QUERY_CASES])
def test_bad_query_string(client, name, url, field):
    response = client.get(url)
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == field
