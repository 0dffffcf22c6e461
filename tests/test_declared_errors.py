"""Error messages come from our declarations, whatever msgspec's own words are.

msgspec decides whether a body or a query string fits its declared type; what
the answer says (field, code, message) is derived from the declaration and the
value (`app.core.declarations`). The pinned cases run again here with every
error msgspec raises reworded to nonsense (same class, no path): an answer
that changes is one still read from msgspec's text. Then msgspec refusing what
the declarations allow: a 400 with the root message, never a 500.
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

import tests.test_bad_input as bad_input
import tests.test_error_messages as error_messages
import tests.test_events_batch as events_batch
import tests.test_request_bodies as request_bodies
import tests.test_web_events as web_events
from app.core.list_parameters import EventListParameters
from app.core.request_bodies import Action, EventBatch, NewEvent
from tests.helpers import count_rows

PINNED = (
    error_messages.test_event_errors_say_what_to_fix,
    error_messages.test_malformed_bodies_say_why,
    error_messages.test_list_errors_say_what_to_fix,
    error_messages.test_batch_errors_say_what_to_fix,
    error_messages.test_a_batch_names_each_bad_item_and_each_reused_id,
    error_messages.test_calculation_range_errors_say_what_to_fix,
    error_messages.test_a_wrong_shape_is_said_before_a_lone_surrogate_inside_it,
    error_messages.test_include_open_must_be_spelt_true_or_false,
    request_bodies.test_a_batch_reports_each_bad_item_whichever_check_finds_it,
    request_bodies.test_every_declared_field_says_what_it_must_be,
    events_batch.test_invalid_items_reject_the_whole_batch_with_per_index_errors,
    events_batch.test_batch_envelope_must_be_an_object_with_a_non_empty_events_array,
    bad_input.test_bad_body,
    bad_input.test_bad_query_string,
    web_events.test_an_invalid_filter_is_named_next_to_its_field_with_400,
)


def cases(test: Callable[..., None]) -> list[tuple[str, dict[str, Any]]]:
    """A pinned test's cases, each as an id and the arguments its parametrization gives (one case if none)."""
    marks = [mark for mark in getattr(test, "pytestmark", []) if mark.name == "parametrize"]
    if not marks:
        return [(test.__name__, {})]
    names, values = marks[0].args
    names = [name.strip() for name in names.split(",")] if isinstance(names, str) else list(names)
    return [(f"{test.__name__}-{index}", dict(zip(names, value if len(names) > 1 else (value,))))
            for index, value in enumerate(values)]


RUNS = [pytest.param(test, arguments, id=name) for test in PINNED for name, arguments in cases(test)]


def reworded(function: Callable[..., Any]) -> Callable[..., Any]:
    """`function`, its msgspec errors of the same class but saying nothing a program could read."""
    @functools.wraps(function)
    def saying_nothing(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except msgspec.ValidationError:
            raise msgspec.ValidationError("reworded") from None
        except msgspec.DecodeError:
            raise msgspec.DecodeError("reworded") from None
    return saying_nothing


@pytest.fixture
def reworded_msgspec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(msgspec.json, "decode", reworded(msgspec.json.decode))
    monkeypatch.setattr(msgspec, "convert", reworded(msgspec.convert))


@pytest.mark.parametrize(("test", "arguments"), RUNS)
def test_every_pinned_answer_stays_when_msgspec_words_its_errors_otherwise(reworded_msgspec, request, test,
                                                                           arguments):
    fixtures = {name: request.getfixturevalue(name) for name in inspect.signature(test).parameters
                if name not in arguments}
    test(**fixtures, **arguments)


def refusing(function: Callable[..., Any], refused: object) -> Callable[..., Any]:
    """`function` (msgspec's decode or convert), refusing every value for the type `refused`."""
    @functools.wraps(function)
    def strict(*args: Any, **kwargs: Any) -> Any:
        wanted = kwargs.get("type", args[1] if len(args) > 1 else None)
        if wanted is refused:
            raise msgspec.ValidationError("refused")
        return function(*args, **kwargs)
    return strict


@pytest.mark.parametrize(("refused", "method", "url", "body", "expected"), [
    (NewEvent, "POST", "/api/event", {"user_id": 1, "action": "a"},
     ("invalid_field", None, "request body must be a JSON object")),
    (EventBatch, "POST", "/api/events/batch", {"events": [{"user_id": 1, "action": "a"}]},
     ("invalid_field", "events", 'request body must be an object {"events": [...]}')),
    (EventListParameters, "GET", "/api/events?user_id=1", None, ("invalid_field", None, "invalid query string")),
])
def test_what_msgspec_refuses_and_the_declarations_allow_is_a_400_with_the_root_message(
        monkeypatch, client, app, refused, method, url, body, expected):
    """A disagreement between msgspec and our reading of the declarations is our bug: it must not be a 500,
    nor may what msgspec refused be stored."""
    monkeypatch.setattr(msgspec.json, "decode", refusing(msgspec.json.decode, refused))
    monkeypatch.setattr(msgspec, "convert", refusing(msgspec.convert, refused))
    response = client.open(url, method=method, json=body)
    error = response.get_json()["error"]
    assert (response.status_code, error["code"], error["field"], error["message"]) == (400, *expected)
    assert count_rows(app, "events") == 0


def test_an_action_filter_msgspec_refuses_and_the_declaration_allows_is_named_beside_its_field(monkeypatch, client):
    monkeypatch.setattr(msgspec, "convert", refusing(msgspec.convert, Action))
    page = client.get("/events?action=click")
    assert page.status_code == 400
    assert web_events.error_text(page.get_data(as_text=True), "action") == "is not a valid action"
