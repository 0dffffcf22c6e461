"""The list endpoints' query parameters, declared once.

`GET /api/events`, its CSV export and `GET /api/metrics` read these types:
msgspec converts the query string into them, checking types, bounds and
unknown names, its refusals worded from the declarations (as for the bodies,
by `app.core.declarations`), and the OpenAPI document generates the endpoints'
parameters from the same declarations. Around the conversion come the rules
of a query string that a type cannot say: each parameter given once, not
empty, not overlong and without NUL; integers written in plain digits and
converted here (msgspec would read a string as JSON: `1e3`, but not `007`);
the range's order and span (`check_span`); the page size the settings allow;
and the free-form `meta.KEY=VALUE` filters.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, ClassVar, Generic, Literal, TypeVar

import msgspec
import msgspec.inspect
from msgspec import Meta

from .declarations import declaration, first_fault
from .errors import ValidationError
from .request_bodies import MAX_ACTION_LENGTH, MAX_BIGINT
from .validation import INSTANT_SPAN, MAX_QUERY_VALUE_LENGTH, check_range, check_span, check_text, parse_query_time

META_PREFIX = "meta."

QueryTime = Annotated[str, Meta(examples=["2025-10-23T13:07:00Z"], extra_json_schema={"format": "date-time"},
                                extra={"noun": "an RFC 3339 timestamp"})]
PageSize = Annotated[int, Meta(description="Page size.", extra={"noun": "a positive integer"})]
_FROM = f"Start of the half-open range `[from, till)`, RFC 3339 with an offset; {INSTANT_SPAN}."
_TILL = f"End of the range, exclusive; not before `from`; {INSTANT_SPAN}."
CursorParameter = Annotated[str, Meta(max_length=MAX_QUERY_VALUE_LENGTH,
                                      description="The `next_cursor` of the previous page.")]


class ListParameters(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What every list takes: one user, and a half-open time range."""

    # Whether `meta.KEY=VALUE` filters are read too (names no type can declare).
    metadata_filters: ClassVar[bool] = False

    user_id: Annotated[int, Meta(ge=1, le=MAX_BIGINT, description="Only this user's rows.",
                                 extra={"noun": "a positive integer"})] | None = None
    from_: Annotated[QueryTime, Meta(description=_FROM)] | None = msgspec.field(default=None, name="from")
    till: Annotated[QueryTime, Meta(description=_TILL)] | None = None


class EventExportParameters(ListParameters, kw_only=True):
    """The events' filters: what `GET /api/events/export` takes (it has no pages)."""

    metadata_filters: ClassVar[bool] = True

    action: Annotated[str, Meta(max_length=MAX_ACTION_LENGTH, description="Only events with this action.")] | None \
        = None


class EventListParameters(EventExportParameters, kw_only=True):
    """What `GET /api/events` takes: the filters, and a page."""

    limit: PageSize | None = None
    cursor: CursorParameter | None = None


class MetricListParameters(ListParameters, kw_only=True):
    """What `GET /api/metrics` takes."""

    limit: PageSize | None = None
    cursor: CursorParameter | None = None
    include_open: Annotated[Literal["true", "false"], Meta(
        description="`true` adds `open_windows`: the windows not closed yet, counted so far (not final, not stored).",
        extra_json_schema={"type": "string"}, extra={"noun": "true or false"})] = "false"


Parameters = TypeVar("Parameters", bound=ListParameters)


@dataclass(frozen=True)
class ListQuery(Generic[Parameters]):
    """A list's parameters as given, and what they mean: the range, the page size and the metadata filters."""

    given: Parameters
    start: datetime | None
    end: datetime | None
    limit: int
    metadata: dict[str, str]


def single_params(args: Mapping[str, list[str]], allowed: set[str], prefixes: tuple[str, ...] = (),
                  max_length: int = MAX_QUERY_VALUE_LENGTH) -> dict[str, str]:
    """Flatten a query string, refusing repeated, empty, overlong or unknown parameters."""
    params: dict[str, str] = {}
    for key, values in args.items():
        if len(key) > max_length:
            raise ValidationError(f"parameter names must be at most {max_length} characters",
                                  field=key[:40] + "…", code="unknown_parameter")
        if key not in allowed and not key.startswith(prefixes):
            raise ValidationError(f"unknown query parameter {key!r}", field=key, code="unknown_parameter")
        if len(values) > 1:
            raise ValidationError("must be given once", field=key)
        value = values[0]
        if value == "":
            raise ValidationError("must not be empty; leave the parameter out instead", field=key)
        if len(value) > max_length:
            raise ValidationError(f"must be at most {max_length} characters", field=key)
        check_text(value, key)
        params[key] = value
    return params


def metadata_filters(params: Mapping[str, str], maximum: int) -> dict[str, str]:
    """The `meta.KEY=VALUE` filters, by key: at most `maximum` (each is a containment test on every candidate
    row), each with a key that a JSON object stored in PostgreSQL can hold."""
    names = [name for name in params if name.startswith(META_PREFIX)]
    if len(names) > maximum:
        raise ValidationError(f"at most {maximum} `meta.KEY=VALUE` filters are allowed per request",
                              field=names[maximum], code="too_many_filters")
    filters = {}
    for name in names:
        key = name[len(META_PREFIX):]
        if not key:
            raise ValidationError("needs a metadata key: meta.KEY=VALUE", field=name)
        check_text(key, name, "metadata keys ")
        filters[key] = params[name]
    return filters


def parse_list_query(args: Mapping[str, list[str]], kind: type[Parameters], *, now: datetime, default_limit: int,
                     max_limit: int, max_metadata_filters: int) -> ListQuery[Parameters]:
    """The query string `args` (each name with its values) as `kind`, checked; `now` places the range's span."""
    declared = declaration(kind).fields
    params = single_params(args, set(declared), (META_PREFIX,) if kind.metadata_filters else ())
    metadata = metadata_filters(params, max_metadata_filters) if kind.metadata_filters else {}
    values: dict[str, str | int] = {}
    for name, value in params.items():
        if name not in declared:  # a metadata filter
            continue
        field = declared[name]
        if isinstance(field.kind, msgspec.inspect.IntType):  # read as Python reads digits: 007 is 7
            if not (value.isascii() and value.isdigit()):
                raise ValidationError(f"must be {field.extra['noun']}", field=name)
            values[name] = int(value)
        else:
            values[name] = value
    try:
        given = msgspec.convert(values, kind)
    except msgspec.ValidationError:
        refused = ValidationError("invalid query string")
        raise first_fault(values, kind, refused) or refused from None
    start = parse_query_time(given.from_, "from") if given.from_ is not None else None
    end = parse_query_time(given.till, "till") if given.till is not None else None
    check_range(start, end)
    check_span(start, end, now)
    limit = getattr(given, "limit", None)
    if limit is not None and not 1 <= limit <= max_limit:
        raise ValidationError(f"must be between 1 and {max_limit}", field="limit")
    return ListQuery(given, start, end, default_limit if limit is None else limit, metadata)
