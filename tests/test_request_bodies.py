"""Bodies decoded by msgspec into their declared types: the shortcuts it allows change no answer.

The rules a type cannot say are skipped when the raw body cannot break them
(no `\\u` escape, too few brackets); these cases sit right at those shortcuts.
"""
from __future__ import annotations

import json
from typing import Literal

import msgspec
import pytest

from app.core.declarations import first_fault
from app.core.errors import ValidationError
from app.core.request_bodies import CalculationRequest, EventBatch, NewEvent, schemas
from tests.helpers import count_rows


def nested(levels: int) -> object:
    value: object = "x"
    for _ in range(levels):
        value = [value]
    return value


def stored_metadata(client, body: bytes) -> dict:
    response = client.post("/api/event", data=body, content_type="application/json")
    assert response.status_code == 201, response.get_json()
    (event,) = client.get(f"/api/events?user_id={response.get_json()['user_id']}").get_json()["events"]
    return event["metadata"]


def test_text_that_only_looks_like_an_escape_is_stored_as_sent(client):
    # a backslash followed by u0000 or ud800 is text, not NUL or a surrogate; a real surrogate pair is a character
    body = rb'{"user_id": 7, "action": "a", "metadata": {"nul": "\\u0000", "lone": "\\ud800", "pair": "\ud83d\ude00"}}'
    assert stored_metadata(client, body) == {"nul": "\\u0000", "lone": "\\ud800", "pair": "\N{GRINNING FACE}"}


def test_integers_beyond_64_bits_in_metadata_are_stored_exactly(client):
    body = json.dumps({"user_id": 8, "action": "a", "metadata": {"big": 2**70, "huge": -(10**300)}}).encode()
    assert stored_metadata(client, body) == {"big": 2**70, "huge": -(10**300)}


def test_nesting_is_bounded_in_a_small_body_and_in_a_batch(client, app):
    assert client.post("/api/event", json={"user_id": 1, "action": "a", "metadata": {"k": nested(31)}}).status_code == 201
    too_deep = {"user_id": 1, "action": "a", "metadata": {"k": nested(40)}}
    error = client.post("/api/event", json=too_deep).get_json()["error"]
    assert (error["field"], error["message"]) == ("metadata", "is nested deeper than 32 levels")
    batch = client.post("/api/events/batch", json={"events": [{"user_id": 1, "action": "a"}, too_deep]})
    assert batch.get_json()["error"]["details"] == [
        {"index": 1, "field": "metadata", "message": "is nested deeper than 32 levels"}]
    assert count_rows(app, "events") == 1


def test_a_batch_reports_each_bad_item_whichever_check_finds_it(client, app):
    """A type error (msgspec), a lone surrogate (the standard library's decoding), a blank action (a rule
    after decoding) and an item that is no object, each at its own index; nothing is stored."""
    body = (b'{"events": [{"user_id": 1, "action": "ok"}, {"user_id": "2", "action": "a"},'
            b' {"user_id": 3, "action": "a\\ud800"}, {"user_id": 4, "action": "  "}, 5]}')
    response = client.post("/api/events/batch", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["details"] == [
        {"index": 1, "field": "user_id", "message": "must be a positive integer"},
        {"index": 2, "field": "action", "message": "must not contain lone surrogate escapes such as \\ud800"},
        {"index": 3, "field": "action", "message": "must not be empty"},
        {"index": 4, "field": None, "message": "request body must be a JSON object"},
    ]
    assert count_rows(app, "events") == 0


def test_the_documented_request_schemas_are_the_declared_ones(client):
    """Bounds and required fields in /api/openapi.json come from the same types that decode the bodies."""
    documented = client.get("/api/openapi.json").get_json()["components"]["schemas"]
    declared = schemas("#/components/schemas/{name}")
    assert documented["EventBatch"]["properties"]["events"]["items"] == {"$ref": "#/components/schemas/NewEvent"}
    for name in (NewEvent.__name__, EventBatch.__name__, "CalculationRequest"):
        for key in ("required", "additionalProperties"):
            assert documented[name].get(key) == declared[name].get(key), (name, key)
        for field, schema in declared[name]["properties"].items():
            for bound in ("minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems"):
                assert documented[name]["properties"][field].get(bound) == schema.get(bound), (name, field, bound)


BODIES = {NewEvent: ("/api/event", {"user_id": 1, "action": "a"}),
          EventBatch: ("/api/events/batch", {"events": [{"user_id": 1, "action": "a"}]}),
          CalculationRequest: ("/api/metrics", {})}


@pytest.mark.parametrize(("body_type", "field"), [(body_type, info.encode_name) for body_type in BODIES
                                                   for info in msgspec.inspect.type_info(body_type).fields])
def test_every_declared_field_says_what_it_must_be(client, body_type, field):
    """A value of the wrong JSON type, for each field of each declared body (new fields included)."""
    path, good = BODIES[body_type]
    wrong = {} if field == "events" else []
    error = client.post(path, json={**good, field: wrong}).get_json()["error"]
    assert (error["code"], error["field"]) == ("invalid_field", field)
    assert error["message"].startswith("must be ") and "`" not in error["message"], error["message"]


class _Choice(msgspec.Struct):
    pick: Literal["a", "b"]


def test_a_choice_declared_without_a_noun_is_worded_from_its_values():
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"pick": "c"}, _Choice)
    root = ValidationError("request body must be a JSON object")
    refused = first_fault({"pick": "c"}, _Choice, root)
    assert (refused.field, refused.message) == ("pick", "must be one of a, b")
    # a name _Choice does not declare is ignored, as msgspec ignores it; a value of another type is no choice
    assert first_fault({"note": 1, "pick": True}, _Choice, root).message == "must be one of a, b"
