"""The input rules: untrusted input (JSON bodies, query strings, CLI options) into typed values.

Pure functions with no Flask or database access, shared by the JSON API, the
HTML pages and the CLI, so every entry point enforces the same rules. Each
failure raises `ValidationError` naming the offending field.

JSON bodies are decoded by msgspec into the types of `app.core.request_bodies`,
which check types, bounds and unknown fields in C; msgspec's error becomes
ours here, its words taken from the declaration. The rules a type cannot say
come after, and cost little when they cannot apply: NUL characters and lone
surrogates can only arrive as `\\u` escapes, and nesting deeper than
MAX_METADATA_DEPTH needs more brackets than a small body holds. A body msgspec
cannot decode is decoded again by the standard library, rarely and only to
say precisely what is wrong with it.
"""
from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import msgspec
import msgspec.inspect

from . import request_bodies as bodies
from .errors import ValidationError
from .request_bodies import MAX_ACTION_LENGTH, MAX_BATCH, MAX_BIGINT, UUID_EXAMPLE
from .times import TimeFormatError, format_rfc3339, parse_rfc3339

__all__ = ["MAX_ACTION_LENGTH", "MAX_BATCH", "MAX_BIGINT"]

MAX_METADATA_DEPTH = 32
MAX_QUERY_VALUE_LENGTH = 512
Body = TypeVar("Body", bound=msgspec.Struct)


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


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs five times as much, paid per event
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
    except msgspec.ValidationError as exc:
        action, _ = _unwrapped(msgspec.inspect.type_info(bodies.Action))
        raise ValidationError(_field_message(str(exc), action, {}), field=field) from None
    return _check_action(value, field, texts=True)


def parse_timestamp(value: str, field: str) -> datetime:
    try:
        return parse_rfc3339(value)
    except TimeFormatError as exc:
        raise ValidationError(str(exc), field=field) from None


# msgspec's errors: "<what>" or "<what> - at `$<path>`", path like `$.user_id` or `$.events[3].metadata[...]`
_MSGSPEC_ERROR = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_NAMED_FIELD = re.compile(r"^Object (?P<kind>missing required|contains unknown) field `(?P<name>[^`]*)`$")
_FIRST_FIELD = re.compile(r"^\.(?P<name>[^.\[]+)")
# Escapes that can decode to what PostgreSQL refuses: NUL (\u0000) and lone surrogates (\ud800-\udfff).
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89abcdefABCDEF])")


def field_types(struct: type[msgspec.Struct]) -> dict[str, tuple[Any, dict[str, Any], bool]]:
    """Each field's msgspec type (None of an optional unwrapped), its declared `extra` and whether it is
    required, by wire name."""
    return {info.encode_name: (*_unwrapped(info.type), info.required)
            for info in msgspec.inspect.type_info(struct).fields}


def _unwrapped(kind: Any) -> tuple[Any, dict[str, Any]]:
    """A msgspec type without its optional None and its metadata, and the `extra` that metadata declares."""
    extra: dict[str, Any] = {}
    if isinstance(kind, msgspec.inspect.UnionType):
        kind = next(t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType))
    if isinstance(kind, msgspec.inspect.Metadata):
        kind, extra = kind.type, kind.extra or {}
    return kind, extra


_NOUNS = {msgspec.inspect.IntType: "an integer", msgspec.inspect.StrType: "a string",
          msgspec.inspect.DictType: "a JSON object", msgspec.inspect.UUIDType: "a UUID string",
          msgspec.inspect.ListType: "an array"}


def _field_message(what: str, kind: Any, extra: dict[str, Any]) -> str:
    """msgspec's complaint about a field, in the words of the field's declaration."""
    if ", got `" in what:
        return f"must be {extra.get('noun') or _NOUNS[type(kind)]}"
    if what.startswith("Invalid enum value"):
        return f"must be {extra.get('noun') or 'one of ' + ', '.join(map(str, kind.values))}"
    if isinstance(kind, msgspec.inspect.IntType) and re.match(r"Expected `int` [<>]=", what):
        return f"must be between {kind.ge} and {kind.le}"
    if isinstance(kind, (msgspec.inspect.StrType, msgspec.inspect.ListType)) and " of length >= " in what:
        return f"must be {extra['noun']}" if "noun" in extra else "must not be empty"
    if isinstance(kind, msgspec.inspect.StrType) and " of length <= " in what:
        return f"must be at most {kind.max_length} characters"
    if isinstance(kind, msgspec.inspect.UUIDType):
        return f"must be a UUID such as {UUID_EXAMPLE}"
    return what


def translate_error(exc: msgspec.ValidationError, struct: type[msgspec.Struct], root_message: str,
                    root_field: str | None = None) -> ValidationError:
    """msgspec's error as ours: the field at fault, a code, and a message from the declaration."""
    found = _MSGSPEC_ERROR.match(str(exc))
    what, path = found["what"], found["path"] or ""
    named = _NAMED_FIELD.match(what)
    if not path and named:
        name = named["name"]
        if named["kind"] == "contains unknown":
            return ValidationError(f"unknown field {name!r}", field=name, code="unknown_field")
        return ValidationError("is required", field=name, code="missing_field")
    first = _FIRST_FIELD.match(path)
    if first is None:
        return ValidationError(root_message, field=root_field)
    name = first["name"]
    kind, extra, required = field_types(struct)[name]  # an error is rare: read from the declaration each time
    if required and what.endswith(", got `null`"):
        return ValidationError("is required", field=name, code="missing_field")
    if isinstance(kind, msgspec.inspect.ListType) and " of length <= " in what:
        return ValidationError(f"must hold at most {kind.max_length} {name}", field=name, code="batch_too_large")
    return ValidationError(_field_message(what, kind, extra), field=name)


class _InvalidItem(Exception):
    """A batch whose shape is right but one of whose events is not: each is then decoded on its own."""


_ITEM_PATH = re.compile(r"^\.events\[\d+\]")
_NESTED_TOO_DEEPLY = "request body is nested too deeply"


def _decoded(raw: bytes | Any, struct: type[Body], root_message: str, root_field: str | None = None, *,
             nullable: bool = False) -> Body:
    """`raw` (bytes, or a document already decoded) as `struct` (or None, if `nullable`), or our ValidationError."""
    wanted = struct | None if nullable else struct
    try:
        if isinstance(raw, bytes):
            return msgspec.json.decode(raw, type=wanted)
        return msgspec.convert(raw, wanted)
    except msgspec.ValidationError as exc:
        what, path = _MSGSPEC_ERROR.match(str(exc)).group("what", "path")
        if struct is bodies.EventBatch and _ITEM_PATH.match(path or ""):
            raise _InvalidItem from None
        if not (what.endswith("out of range") and isinstance(raw, bytes)):
            raise translate_error(exc, struct, root_message, root_field) from None
        # a number msgspec cannot hold (1e999, or an integer of a thousand digits): as below
    except RecursionError:
        raise ValidationError(_NESTED_TOO_DEEPLY, code="malformed_json") from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        pass
    # What msgspec refuses to decode, the standard library decodes again: it reads lone surrogates (which then
    # get their field's message) and numbers beyond 64 bits, and says precisely why it refuses anything else.
    return _decoded(decode_json_body(raw), struct, root_message, root_field, nullable=nullable)


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


class _RawBatch(msgspec.Struct):
    events: list[msgspec.Raw]


def _batch_items(raw: bytes) -> list[bytes | Any]:
    """The items of a batch whose shape msgspec has already accepted, each undecoded if it can be."""
    try:
        return [bytes(item) for item in msgspec.json.decode(raw, type=_RawBatch).events]
    except msgspec.DecodeError:  # lone surrogates again: the standard library reads them
        return list(decode_json_body(raw)["events"])


def parse_batch(raw: bytes, *, now: datetime, bounds: InputBounds) -> list[ValidEvent]:
    """Validate a batch body `{"events": [...]}` of 1 to MAX_BATCH events, all or none.

    Every invalid item is reported (its index, field and message) in one
    error, so a client can fix the batch and send it again.
    """
    suspicions = _Suspicions.of(raw)
    items: list[bytes | Any | bodies.NewEvent]
    try:
        items = list(_decoded(raw, bodies.EventBatch, _BATCH_ROOT, "events").events)
    except _InvalidItem:
        items = _batch_items(raw)
    news: list[ValidEvent] = []
    errors = []
    for index, item in enumerate(items):
        try:
            body = item if isinstance(item, bodies.NewEvent) else _decoded(item, bodies.NewEvent, _EVENT_ROOT)
            news.append(_checked(body, suspicions, now, bounds))
        except ValidationError as exc:
            errors.append({"index": index, "field": exc.field, "message": exc.message})
    if errors:
        raise ValidationError(f"{len(errors)} of {len(items)} events are invalid; nothing was stored",
                              field="events", code="invalid_batch", details=errors)
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


def parse_calculation_request(raw: bytes, *, max_range: timedelta) -> tuple[datetime | None, datetime | None]:
    """The body of `POST /api/metrics` (JSON `null` is no body): `parse_calculation_range` of its fields."""
    body = _decoded(raw, bodies.CalculationRequest, _EVENT_ROOT, nullable=True)
    if body is None:
        return None, None
    return parse_calculation_range(body.from_, body.till, max_range=max_range)


def parse_calculation_range(start: str | None, end: str | None, *,
                            max_range: timedelta) -> tuple[datetime | None, datetime | None]:
    """An explicit `[from, till)` to recompute, or (None, None) for "every pending window".

    Both bounds or neither: a half-given range is refused rather than guessed.
    A range longer than `max_range` is refused too: one request must not queue
    millions of windows (from year 1), more than a job can compute in its time.
    """
    if (start is None) != (end is None):
        raise ValidationError("give both `from` and `till`, or neither", field="till" if end is None else "from")
    if start is None:
        return None, None
    start_at, end_at = parse_timestamp(start, "from"), parse_timestamp(end, "till")
    check_range(start_at, end_at)
    if end_at - start_at > max_range:
        raise ValidationError(f"must be at most {max_range.days} days after `from`", field="till")
    return start_at, end_at
