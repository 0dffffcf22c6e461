"""Reading the dashboard's filter forms: lenient about shape, strict about values.

The pages reuse the validators of `app.core.validation`, with two differences from
the JSON API that suit people filling in a form: an empty field means "not
given", and `from`/`till` come from `<input type="datetime-local">`, which has
no offset, so they are read as UTC. Every field is checked, not just the first
bad one, so each message can stand next to its own field.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TypeVar

from ..core.errors import ValidationError
from ..core.validation import MAX_QUERY_VALUE_LENGTH, check_range, parse_action, parse_query_int, parse_query_time
from ..services.events import EventFilter

MAX_FIELD_LENGTH = MAX_QUERY_VALUE_LENGTH
_LOCAL_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?$")
_WITH_OFFSET = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
EARLIEST_TIME = datetime(2, 1, 1, tzinfo=timezone.utc)
LATEST_TIME = datetime(9999, 1, 1, tzinfo=timezone.utc)
_TIME_HINT = "must be a date and time such as 2025-10-23T13:07 (UTC)"
_META_HINT = "must look like key = value, for example page = /home"


@dataclass
class FilterForm:
    """What a person typed (to show it back), what it means, and what is wrong with it."""

    fields: tuple[str, ...]
    raw: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    user_id: int | None = None
    action: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    live: bool = False

    @property
    def valid(self) -> bool:
        return not self.errors

    def query(self) -> dict[str, str]:
        """The non-empty fields, in form order: the canonical query string of this view."""
        return {name: self.raw[name] for name in self.fields if self.raw.get(name)}

    def local_time(self, name: str) -> str:
        """The value for a datetime-local input: the parsed time in UTC, or what was typed."""
        moment = {"from": self.start, "till": self.end}[name]
        if moment is None or name in self.errors:
            return self.raw.get(name, "")
        pattern = "%Y-%m-%dT%H:%M:%S" if moment.second or moment.microsecond else "%Y-%m-%dT%H:%M"
        return moment.strftime(pattern)

    def event_filter(self) -> EventFilter:
        return EventFilter(user_id=self.user_id, action=self.action, start=self.start, end=self.end,
                           metadata=self.metadata)


def _text(args: Mapping[str, str], name: str) -> str:
    return (args.get(name) or "").strip()


def parse_local_time(value: str, name: str) -> datetime:
    """A datetime-local value (no offset) read as UTC; a full RFC 3339 time is accepted too.

    The pages count windows around these times (and PostgreSQL hands back
    window ends past them), so a time must stay a year inside the calendar.
    """
    if _LOCAL_TIME.match(value):
        value = value + ":00Z" if value.count(":") == 1 else value + "Z"
    elif not _WITH_OFFSET.match(value):
        raise ValidationError(_TIME_HINT, field=name)
    moment = parse_query_time(value, name)
    if not EARLIEST_TIME <= moment < LATEST_TIME:
        raise ValidationError(f"must lie between {EARLIEST_TIME:%Y-%m-%d} and {LATEST_TIME:%Y-%m-%d}", field=name)
    return moment


def parse_metadata_pair(value: str, name: str = "meta") -> dict[str, str]:
    """`key = value` (spaces around `=` optional) as the API's one-pair metadata filter."""
    key, separator, wanted = value.partition("=")
    key, wanted = key.strip(), wanted.strip()
    if not separator or not key or not wanted:
        raise ValidationError(_META_HINT, field=name)
    return {key: wanted}


T = TypeVar("T")


def _check(form: FilterForm, name: str, parse: Callable[[str, str], T]) -> T | None:
    """Parse one field, or note its message on the form and give None."""
    value = form.raw.get(name, "")
    if not value:
        return None
    try:
        if len(value) > MAX_FIELD_LENGTH:
            raise ValidationError(f"must be at most {MAX_FIELD_LENGTH} characters", field=name)
        if "\x00" in value:
            raise ValidationError("must not contain NUL characters", field=name)
        return parse(value, name)
    except ValidationError as exc:
        form.errors[name] = exc.message
        return None


def _parse_common(form: FilterForm) -> None:
    form.user_id = _check(form, "user_id", parse_query_int)
    form.start = _check(form, "from", parse_local_time)
    form.end = _check(form, "till", parse_local_time)
    if form.start is not None and form.end is not None:
        try:
            check_range(form.start, form.end)
        except ValidationError as exc:
            form.errors["till"] = exc.message


EVENT_FIELDS = ("user_id", "action", "meta", "from", "till", "live")
METRIC_FIELDS = ("user_id", "from", "till")


def parse_event_form(args: Mapping[str, str]) -> FilterForm:
    """The events page's filters; unknown parameters are ignored, as links from elsewhere may carry some."""
    form = FilterForm(EVENT_FIELDS, {name: _text(args, name) for name in EVENT_FIELDS})
    _parse_common(form)
    form.action = _check(form, "action", parse_action)
    form.metadata = _check(form, "meta", parse_metadata_pair) or {}
    form.live = form.raw["live"] in ("1", "on", "true")
    form.raw["live"] = "1" if form.live else ""
    return form


def parse_metric_form(args: Mapping[str, str]) -> FilterForm:
    """The metrics page's filters: a user and a range of window starts."""
    form = FilterForm(METRIC_FIELDS, {name: _text(args, name) for name in METRIC_FIELDS})
    _parse_common(form)
    return form
