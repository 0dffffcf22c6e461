"""The input rules: untrusted input (JSON bodies, query strings, CLI options) into typed values.

Pure functions with no Flask or database access, shared by the JSON API, the
HTML pages and the CLI, so every entry point enforces the same rules. Each
failure raises `ValidationError` naming the offending field.

JSON bodies are decoded by msgspec into the types of `app.core.request_bodies`,
which check types, bounds and unknown fields in C. The rules a type cannot say
come after, and cost little when they cannot apply: NUL characters and lone
surrogates can only arrive as `\\u` escapes, and nesting deeper than
MAX_METADATA_DEPTH needs more brackets than a small body holds. A body msgspec
refuses is decoded again by the standard library, rarely: to say precisely
why it is no JSON, or to find the field at fault and word its message from the
declaration (`app.core.declarations`), never from msgspec's message.
"""
from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import Meta

from . import request_bodies as bodies
from .declarations import declared_type, first_fault, value_fault
from .errors import ValidationError
from .request_bodies import MAX_ACTION_LENGTH, MAX_BATCH, MAX_BIGINT
from .times import TimeFormatError, format_rfc3339, parse_rfc3339
from .windows import EPOCH

__all__ = ["MAX_ACTION_LENGTH", "MAX_BATCH", "MAX_BIGINT"]

MAX_METADATA_DEPTH = 32
MAX_QUERY_VALUE_LENGTH = 512
Body = TypeVar("Body", bound=msgspec.Struct)
# The span the ends of a range must lie in (`check_instant`): the `from` and `till` of a list or a calculation. From
# EARLIEST_INSTANT, the origin windows are counted from (the Unix epoch, what a client's zero timestamp means), to
# LATEST_AHEAD after now: events lie minutes ahead at most, but a range may end at the end of next month, say.
# Beyond it a range is trouble: a calculation fills the ledger with windows no event is in (2,184 for year 1), and
# near datetime.max the end of a window overflows.
EARLIEST_INSTANT = EPOCH
LATEST_AHEAD = timedelta(days=366)
# The span in the API's description.
INSTANT_SPAN = f"not before {EARLIEST_INSTANT:%Y-%m-%dT%H:%M:%SZ}, nor more than {LATEST_AHEAD.days} days after now"


@dataclass(frozen=True)
class InputBounds:
    """The configurable bounds that validation enforces."""

    metadata_max_bytes: int = 16 * 1024
    future_tolerance: timedelta = timedelta(minutes=5)
    # Each event in a distinct closed window makes that window stale; the age bound caps the
    # windows one client can make the calculation redo (365 days: 2,190 windows of 4 hours).
    max_age: timedelta = timedelta(days=365)
    # EVENTS_RETENTION_DAYS: an event older than what is kept would be dropped at once
    events_retention_days: int | None = None


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ is slower, and one is made per event
class ValidEvent:
    """A validated event, ready to store. `id` is None when the client chose none."""

    user_id: int
    action: str
    metadata: dict[str, Any]
    metadata_json: str
    occurred_at: datetime | None
    id: uuid.UUID | None


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def decode_json_body(raw: bytes) -> Any:
    """Decode a request body strictly: UTF-8 only, no NaN/Infinity, bounded nesting.

    The standard library's decoder, for its precise messages: used when msgspec refuses a body.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError("request body is not valid UTF-8", code="malformed_json") from None
    if not text.strip():
        raise ValidationError("request body is empty; a JSON object is expected", code="malformed_json")
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValidationError(_NESTED_TOO_DEEPLY, code="malformed_json") from None
    except ValueError as exc:
        raise ValidationError(f"request body is not valid JSON: {exc}", code="malformed_json") from None


def check_text(value: str, field: str | None, what: str = "") -> None:
    """Text PostgreSQL can store: no NUL, and no lone UTF-16 surrogates (JSON's `\\ud800` escapes)."""
    if "\x00" in value:
        raise ValidationError(f"{what}must not contain NUL characters", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{what}must not contain lone surrogate escapes such as \\ud800", field=field) from None


def _check_values(container: dict[str, Any] | list[Any], field: str, texts: bool, depth: int = 0) -> None:
    """Walk nested metadata for its depth and, with `texts`, its strings; the metadata object is level 0.

    Only containers are walked into: a scalar needs no call of its own.
    """
    items = container.values() if isinstance(container, dict) else container
    if texts and isinstance(container, dict):
        for key in container:
            check_text(key, field, "keys ")
    if depth >= MAX_METADATA_DEPTH and items:  # what it holds would lie deeper than the limit
        raise ValidationError(f"is nested deeper than {MAX_METADATA_DEPTH} levels", field=field)
    for item in items:
        if isinstance(item, (dict, list)):
            _check_values(item, field, texts, depth + 1)
        elif texts and isinstance(item, str):
            check_text(item, field)


def _check_action(value: str, field: str, texts: bool) -> str:
    """What the declared type of an action cannot say: not blank, and (with `texts`) text PostgreSQL stores."""
    if not value.strip():
        raise ValidationError("must not be empty", field=field)
    if texts:
        check_text(value, field)
    return value


def parse_action(value: str, field: str = "action") -> str:
    """An action typed into a filter: the same rules as an event's `action`."""
    try:
        msgspec.convert(value, bodies.Action)
    except msgspec.ValidationError:
        fault = value_fault(value, declared_type(bodies.Action, field))
        raise fault or ValidationError("is not a valid action", field=field) from None
    return _check_action(value, field, texts=True)


def parse_timestamp(value: str, field: str) -> datetime:
    try:
        return parse_rfc3339(value)
    except TimeFormatError as exc:
        raise ValidationError(str(exc), field=field) from None


# Escapes that can decode to what PostgreSQL refuses: NUL (\u0000) and lone surrogates (\ud800-\udfff).
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89abcdefABCDEF])")
_NESTED_TOO_DEEPLY = "request body is nested too deeply"


class _InvalidItems(Exception):
    """A batch whose envelope is right but some of whose events are not: each is then judged on its own."""

    def __init__(self, items: list[Any]) -> None:
        super().__init__()
        self.items = items


def _decoded(raw: bytes, struct: type[Body], root_message: str, root_field: str | None = None, *,
             nullable: bool = False) -> Body:
    """The body `raw` as `struct` (or None, if `nullable`), or our ValidationError."""
    try:
        return msgspec.json.decode(raw, type=struct | None if nullable else struct)
    except RecursionError:
        raise ValidationError(_NESTED_TOO_DEEPLY, code="malformed_json") from None
    except (msgspec.DecodeError, UnicodeDecodeError):  # a msgspec.ValidationError is a DecodeError
        pass
    # What msgspec refuses, the standard library decodes again: it says precisely why a body is no JSON, and
    # reads lone surrogates (which then get their field's message) and numbers beyond 64 bits.
    return _converted(decode_json_body(raw), struct, root_message, root_field, nullable=nullable)


def _converted(document: Any, struct: type[Body], root_message: str, root_field: str | None = None, *,
               nullable: bool = False) -> Body:
    """A decoded `document` as `struct` (or None, if `nullable`), or the fault its declaration names."""
    try:
        return msgspec.convert(document, struct | None if nullable else struct)
    except RecursionError:
        raise ValidationError(_NESTED_TOO_DEEPLY, code="malformed_json") from None
    except msgspec.ValidationError:
        pass
    root = ValidationError(root_message, field=root_field)
    fault = first_fault(document, struct, root)
    if fault is None and struct is bodies.EventBatch:
        raise _InvalidItems(document["events"])
    raise fault or root  # root too if msgspec refused what our reading of the declaration allows: a bug of ours


@dataclass(frozen=True)
class _Suspicions:
    """What the raw body allows: escapes that could hide NUL or a lone surrogate, and deep nesting."""

    texts: bool
    deep: bool

    @classmethod
    def of(cls, raw: bytes) -> _Suspicions:
        return cls(texts=_SUSPECT_ESCAPE.search(raw) is not None,
                   deep=raw.count(b"[") + raw.count(b"{") > MAX_METADATA_DEPTH)


def _checked(body: bodies.NewEvent, suspicions: _Suspicions, now: datetime, bounds: InputBounds) -> ValidEvent:
    """The rules a type cannot say, on a decoded event."""
    _check_action(body.action, "action", suspicions.texts)
    metadata = body.metadata
    if suspicions.deep or suspicions.texts:
        _check_values(metadata, "metadata", suspicions.texts)
    encoded = msgspec.json.encode(metadata)
    if len(encoded) > bounds.metadata_max_bytes:
        raise ValidationError(f"must be at most {bounds.metadata_max_bytes} bytes when encoded", field="metadata")

    occurred_at = None
    if body.occurred_at is not None:
        if suspicions.texts:
            check_text(body.occurred_at, "occurred_at")
        occurred_at = parse_timestamp(body.occurred_at, "occurred_at")
        if occurred_at > now + bounds.future_tolerance:
            raise ValidationError("must not be more than "
                                  f"{int(bounds.future_tolerance.total_seconds())} seconds in the future",
                                  field="occurred_at")
        if now - occurred_at > bounds.max_age:  # (now - max_age could fall before year 1)
            raise ValidationError(f"must not be more than {bounds.max_age.days} days in the past "
                                  f"(not before {format_rfc3339(now - bounds.max_age)})", field="occurred_at")
        days = bounds.events_retention_days
        if days is not None and occurred_at < now - timedelta(days=days):
            raise ValidationError(f"must be at most {days} days old: events are kept for {days} days "
                                  "(EVENTS_RETENTION_DAYS)", field="occurred_at")
    return ValidEvent(body.user_id, body.action, metadata, encoded.decode(), occurred_at, body.id)


_EVENT_ROOT = "request body must be a JSON object"
_BATCH_ROOT = 'request body must be an object {"events": [...]}'


def parse_event(raw: bytes, *, now: datetime, bounds: InputBounds) -> ValidEvent:
    """Validate one event as sent to `POST /api/event`, from the body's bytes.

    Unknown fields are rejected rather than ignored, so a misspelt field
    (`metdata`) is reported instead of silently dropping data.
    """
    body = _decoded(raw, bodies.NewEvent, _EVENT_ROOT)
    return _checked(body, _Suspicions.of(raw), now, bounds)


class _SplitBatch(msgspec.Struct):
    """A batch's events, each left undecoded, so that each can be judged on its own; nothing else is judged here."""

    events: list[msgspec.Raw]


def _split_events(raw: bytes) -> list[bytes] | None:
    """The events of a batch as raw bytes, or None when the body is not an object holding an array `events`
    (or holds text only the standard library reads)."""
    try:
        return [bytes(item) for item in msgspec.json.decode(raw, type=_SplitBatch).events]
    except RecursionError:
        raise ValidationError(_NESTED_TOO_DEEPLY, code="malformed_json") from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None


def _batch_envelope(raw: bytes) -> list[Any]:
    """The events of a batch msgspec refused, once its envelope is right by its declaration (else its fault)."""
    try:
        return list(_converted(decode_json_body(raw), bodies.EventBatch, _BATCH_ROOT, "events").events)
    except _InvalidItems as invalid:
        return invalid.items


def parse_batch(raw: bytes, *, now: datetime, bounds: InputBounds) -> list[ValidEvent]:
    """Validate a batch body `{"events": [...]}` of 1 to MAX_BATCH events, all or none.

    Every invalid item is reported (its index, field and message) in one
    error, so a client can fix the batch and send it again. When msgspec
    refuses the batch, its events are judged one by one first, then its
    envelope against the declaration.
    """
    suspicions = _Suspicions.of(raw)
    items: list[Any]
    try:
        items, refused = list(msgspec.json.decode(raw, type=bodies.EventBatch).events), False
    except RecursionError:
        raise ValidationError(_NESTED_TOO_DEEPLY, code="malformed_json") from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        items, refused = _split_events(raw) or _batch_envelope(raw), True
    news: list[ValidEvent] = []
    errors = []
    for index, item in enumerate(items):
        try:
            if isinstance(item, bodies.NewEvent):
                body = item
            elif isinstance(item, bytes):
                body = _decoded(item, bodies.NewEvent, _EVENT_ROOT)
            else:
                body = _converted(item, bodies.NewEvent, _EVENT_ROOT)
            news.append(_checked(body, suspicions, now, bounds))
        except ValidationError as exc:
            errors.append({"index": index, "field": exc.field, "message": exc.message})
    if errors:
        raise ValidationError(f"{len(errors)} of {len(items)} events are invalid; nothing was stored",
                              field="events", code="invalid_batch", details=errors)
    if refused:  # every event is right: what msgspec refused is the envelope, or what only the standard library reads
        try:
            _converted(decode_json_body(raw), bodies.EventBatch, _BATCH_ROOT, "events")
        except _InvalidItems:  # msgspec refused what our reading of the declaration allows: a bug of ours
            raise ValidationError(_BATCH_ROOT, field="events") from None
    return news


def parse_query_int(value: str, field: str, *, minimum: int = 1, maximum: int = MAX_BIGINT) -> int:
    if not value.isascii() or not value.isdigit():
        raise ValidationError("must be a positive integer", field=field)
    number = int(value)
    if number < minimum or number > maximum:
        raise ValidationError(f"must be between {minimum} and {maximum}", field=field)
    return number


def parse_query_time(value: str, field: str) -> datetime:
    try:
        return parse_rfc3339(value)
    except TimeFormatError as exc:
        raise ValidationError(str(exc), field=field) from None


def check_range(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and start > end:
        raise ValidationError("must not be before `from`", field="till")


def check_instant(moment: datetime, field: str, now: datetime) -> None:
    """Refuse an instant outside `[EARLIEST_INSTANT, now + LATEST_AHEAD]`, naming `field` and the bound."""
    if moment < EARLIEST_INSTANT:
        raise ValidationError(f"must not be before {format_rfc3339(EARLIEST_INSTANT)}", field=field)
    if moment > now + LATEST_AHEAD:  # now is far from datetime.max, so the sum cannot overflow
        raise ValidationError(f"must not be after {format_rfc3339(now + LATEST_AHEAD)} "
                              f"({LATEST_AHEAD.days} days from now)", field=field)


def check_span(start: datetime | None, end: datetime | None, now: datetime) -> None:
    """Each given end of a range `[from, till)` within the span of `check_instant`, `from` first."""
    if start is not None:
        check_instant(start, "from", now)
    if end is not None:
        check_instant(end, "till", now)


def parse_calculation_request(raw: bytes, *, now: datetime,
                              max_range: timedelta) -> tuple[datetime | None, datetime | None]:
    """The body of `POST /api/metrics` (JSON `null` is no body): `parse_calculation_range` of its fields."""
    body = _decoded(raw, bodies.CalculationRequest, _EVENT_ROOT, nullable=True)
    if body is None:
        return None, None
    return parse_calculation_range(body.from_, body.till, now=now, max_range=max_range)


def parse_calculation_range(start: str | None, end: str | None, *, now: datetime,
                            max_range: timedelta) -> tuple[datetime | None, datetime | None]:
    """An explicit `[from, till)` to recompute, or (None, None) for "every pending window".

    Both bounds or neither: a half-given range is refused rather than guessed.
    A range longer than `max_range` is refused too: one request must not queue
    millions of windows, more than a job can compute in its time. And both
    ends must lie in the span of `check_instant`: a range in year 1 would fill
    the ledger with windows no event is in, one in year 9999 fail every retry.
    """
    if (start is None) != (end is None):
        raise ValidationError("give both `from` and `till`, or neither", field="till" if end is None else "from")
    if start is None:
        return None, None
    start_at, end_at = parse_timestamp(start, "from"), parse_timestamp(end, "till")
    check_range(start_at, end_at)
    if end_at - start_at > max_range:
        raise ValidationError(f"must be at most {max_range.days} days after `from`", field="till")
    check_span(start_at, end_at, now)
    return start_at, end_at
