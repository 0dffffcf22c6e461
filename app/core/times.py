"""UTC-aware time helpers: parsing RFC 3339 input and formatting output.

Every datetime that enters the service goes through `parse_rfc3339`, which
insists on an explicit offset, and leaves through `format_rfc3339`, which
always writes UTC with a `Z`.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

_RFC3339 = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}:\d{2})"
    r"(?:\.(?P<frac>\d{1,9}))?(?P<offset>[Zz]|[+-]\d{2}:\d{2})?$"
)


class TimeFormatError(ValueError):
    """The text is not an RFC 3339 timestamp with a UTC offset."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def parse_rfc3339(text: str) -> datetime:
    """Parse `2025-10-23T13:07:00.000Z` (or `+02:00`) into an aware UTC datetime.

    Fractions beyond microseconds are truncated, because PostgreSQL keeps
    microseconds; a missing offset is an error rather than a guess.
    """
    match = _RFC3339.match(text)
    if not match:
        raise TimeFormatError("must be an RFC 3339 timestamp such as 2025-10-23T13:07:00Z")
    if match["offset"] is None:
        raise TimeFormatError("must include a UTC offset, for example Z or +02:00")
    # Python 3.11's fromisoformat (in C) reads every form the pattern lets through, fractions of any
    # length truncated to microseconds, but for a lowercase `t` or `z`
    matched = match[0]
    try:
        parsed = datetime.fromisoformat(matched.upper() if "t" in matched or "z" in matched else matched)
    except ValueError:
        raise TimeFormatError("is not a real date and time") from None
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:
        raise TimeFormatError("is out of range") from None


def format_rfc3339(value: datetime) -> str:
    """Write an aware datetime as UTC RFC 3339 with microseconds and `Z`."""
    # isoformat, unlike strftime's %Y, pads years before 1000 to four digits.
    return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
