"""Property-based fuzzing of the JSON API: from its own OpenAPI document (schemathesis), and bodies at the edges.

Every generated request, valid or not, must get an answer that the document
describes (status, content type, body schema), and never a 5xx. Bounded to a
few dozen examples per operation so it runs in seconds.

One check is left out: "schema-valid data is accepted". Some of our rules
cannot be said in JSON Schema (an `integer` there admits `20.0`, which we
refuse as a float; `occurred_at` may not lie more than five minutes ahead),
so valid-by-schema requests are rightly refused with a documented 400.

The document's generator seldom reaches the edges: the calendar's ends, or
nesting deeper than any stack. So the body routes (an event, a batch's items, a
calculation's range) also get bodies made for them by hypothesis, mostly valid
and with such edges: each answer is below 500, a refusal is the JSON envelope
and stores nothing, and a calculation is queued only for a range in the span
that ranges must lie in (`app.core.validation.check_instant`).
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import schemathesis
from schemathesis import checks
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.core.times import format_rfc3339, parse_rfc3339
from app.core.validation import EARLIEST_INSTANT, LATEST_AHEAD
from tests.helpers import count_rows
from tests.test_fuzz_params import EXTREME_TIMES, times

EXAMPLES_PER_OPERATION = 40
EXAMPLES_PER_BODY_ROUTE = 60
TOKEN = "fuzz-full-access-token"
AUTHORIZED = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def app_config(app_config):
    """Access control on, as the document says; no ingestion, recalculation or read budget, so every request
    reaches the code."""
    return {**app_config, "API_TOKENS_FULL": TOKEN, "ADMIN_PASSWORD_HASH": "scrypt:unused",
            "RATE_LIMIT_INGEST": "", "RATE_LIMIT_RECALCULATE": "", "RATE_LIMIT_READ": ""}


def test_every_answer_conforms_to_the_document(app):
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def conforms(case: schemathesis.Case) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"},
                                   excluded_checks=[checks.positive_data_acceptance])

        try:
            conforms()
        except Exception as exc:
            raise AssertionError(f"{operation.label}: {exc}") from exc


# Nesting around the metadata limit (32 levels), past the decoders' recursion limits, and 100,000 levels deep
# (200 KB of valid JSON).
DEPTHS = (0, 31, 32, 33, 1_000, 100_000)
UNUSUAL = st.sampled_from([None, 0, -1, 2**63, 1.5, "1", True, [], {}])


def nested(depth: int) -> str:
    """JSON text `depth` arrays deep: the standard library would give up encoding it, as decoding it."""
    return "[" * depth + "1" + "]" * depth


def recent_time(seconds_ago: int) -> str:
    return format_rfc3339(datetime.now(timezone.utc) - timedelta(seconds=seconds_ago))


instants = st.one_of(st.integers(-600, 400 * 86400).map(recent_time), times(), st.sampled_from(EXTREME_TIMES))


def json_value(strategy: st.SearchStrategy) -> st.SearchStrategy[str]:
    """A value of `strategy` as JSON text one time in two; else a value of another type, or nesting in its place."""
    valid = strategy.map(json.dumps)
    return st.one_of(valid, valid, UNUSUAL.map(json.dumps), st.sampled_from(DEPTHS).map(nested))


def json_object(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[str]], required: tuple[str, ...] = ()) -> str:
    """An object of some of `fields` (the `required` nearly always), as JSON text; now and then an unknown one."""
    parts = [f"{json.dumps(name)}: {draw(value)}" for name, value in fields.items()
             if draw(st.integers(0, 9)) < (9 if name in required else 5)]
    if draw(st.integers(0, 19)) == 0:
        parts.append(f'"colour": {draw(json_value(st.text(max_size=5)))}')
    return "{" + ", ".join(parts) + "}"


@st.composite
def events(draw: st.DrawFn) -> str:
    """One event as JSON text: mostly valid, with its metadata nested to any of DEPTHS."""
    metadata = st.sampled_from(DEPTHS).map(lambda depth: '{"page": "/home", "a": ' + nested(depth) + "}")
    return json_object(draw, {
        "user_id": json_value(st.integers(1, 2**63 - 1)),
        "action": json_value(st.sampled_from(["page_view", "click", " ", "a" * 256])),
        "metadata": st.one_of(metadata, json_value(st.just({}))),
        "occurred_at": json_value(instants),
        "id": json_value(st.uuids().map(str)),
    }, required=("user_id", "action"))


@st.composite
def batches(draw: st.DrawFn) -> str:
    """A batch of a few events as JSON text; now and then an envelope that is no batch."""
    if draw(st.integers(0, 9)) == 0:
        return '{"events": ' + draw(json_value(st.just([]))) + "}"
    return '{"events": [' + ", ".join(draw(st.lists(events(), min_size=1, max_size=3))) + "]}"


@st.composite
def calculations(draw: st.DrawFn) -> str:
    """A calculation's range as JSON text, its ends anywhere in the calendar; now and then no body at all."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.sampled_from(["", "null", "{}", nested(100_000)]))
    return json_object(draw, {"from": json_value(instants), "till": json_value(instants)}, required=("from", "till"))


BODIES = {"/api/event": events(), "/api/events/batch": batches(), "/api/metrics": calculations()}
# What answered 500, or was queued though no event can lie in its range: tried first on every run.
KNOWN_EDGES = {
    "/api/event": ['{"user_id": 1, "action": "a", "metadata": {"a": ' + nested(100_000) + "}}"],
    "/api/events/batch": ['{"events": [{"user_id": 1, "action": "a", "metadata": {"a": ' + nested(100_000) + "}}]}"],
    "/api/metrics": ['{"from": "9999-12-01T00:00:00Z", "till": "9999-12-31T00:00:00Z"}',
                     '{"from": "0001-01-01T00:00:00Z", "till": "0001-12-31T00:00:00Z"}'],
}


def in_span(moment: datetime) -> bool:
    """Whether `moment` lies in the span a range must lie in (its end read a moment after the app read it)."""
    return EARLIEST_INSTANT <= moment <= datetime.now(timezone.utc) + LATEST_AHEAD


@pytest.mark.parametrize("route", sorted(BODIES))
def test_no_body_makes_a_body_route_fail_half_store_or_queue_a_range_outside_the_span(app, client, route):
    @given(body=BODIES[route])
    @settings(max_examples=EXAMPLES_PER_BODY_ROUTE, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def never_5xx(body: str) -> None:
        before = count_rows(app, "events")
        response = client.post(route, data=body, content_type="application/json", headers=AUTHORIZED)
        shown = f"POST {route} {body[:200]!r}: {response.status_code} {response.get_data()[:300]!r}"
        assert response.status_code < 500, shown
        if response.status_code >= 400:
            error = response.get_json()["error"]
            assert error["code"] and error["message"], shown
            assert count_rows(app, "events") == before, shown
        elif route == "/api/metrics":
            params = response.get_json()["job"]["params"]
            assert all(in_span(parse_rfc3339(params[end])) for end in ("start", "end") if params[end]), shown

    for body in KNOWN_EDGES[route]:
        never_5xx = example(body=body)(never_5xx)
    never_5xx()
