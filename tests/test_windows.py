"""Window arithmetic: aligned, half-open UTC windows."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone, tzinfo

import pytest

from app.core.times import parse_rfc3339
from app.core.windows import Window, ceil_window, floor_window, last_closed_boundary, window_of, window_size

UTC = timezone.utc
FOUR = timedelta(hours=4)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_boundary_instant_belongs_to_the_window_it_starts():
    assert window_of(at(2025, 10, 23, 4), FOUR) == Window(at(2025, 10, 23, 4), at(2025, 10, 23, 8))


def test_last_microsecond_belongs_to_the_earlier_window():
    assert window_of(at(2025, 10, 23, 3, 59, 59, 999999), FOUR) == Window(at(2025, 10, 23, 0), at(2025, 10, 23, 4))


def test_day_end_window_closes_at_next_midnight():
    assert window_of(at(2025, 10, 23, 23, 59, 59), FOUR) == Window(at(2025, 10, 23, 20), at(2025, 10, 24, 0))


def test_year_end_window_crosses_into_the_new_year():
    assert window_of(at(2025, 12, 31, 22, 30), FOUR) == Window(at(2025, 12, 31, 20), at(2026, 1, 1, 0))
    assert window_of(at(2026, 1, 1, 0), FOUR).start == at(2026, 1, 1, 0)


def test_non_utc_offsets_are_aligned_in_utc():
    plus_two = timezone(timedelta(hours=2))
    # 05:30 at +02:00 is 03:30 UTC: the [00:00, 04:00) UTC window
    assert window_of(datetime(2025, 10, 23, 5, 30, tzinfo=plus_two), FOUR).start == at(2025, 10, 23, 0)
    kathmandu = timezone(timedelta(hours=5, minutes=45))
    assert floor_window(datetime(2025, 10, 23, 9, 45, tzinfo=kathmandu), FOUR) == at(2025, 10, 23, 4)


class _NoOffset(tzinfo):
    """A zone that knows no offset: a datetime in it is as naive as one without a zone."""

    def utcoffset(self, dt: datetime | None) -> None:
        return None


@pytest.mark.parametrize("moment", [datetime(2025, 10, 23, 5), datetime(2025, 10, 23, 5, tzinfo=_NoOffset())])
def test_naive_datetimes_are_refused(moment):
    with pytest.raises(ValueError, match="^datetime must be timezone-aware$"):
        floor_window(moment, FOUR)


@pytest.mark.parametrize(("hours", "last_start"), [(1, 23), (2, 22), (3, 21), (4, 20), (6, 18), (8, 16), (12, 12), (24, 0)])
def test_window_sizes_that_divide_a_day(hours, last_start):
    size = window_size(hours)
    assert size == timedelta(hours=hours)
    # the day's last window starts `hours` before midnight, and its first at midnight
    assert window_of(at(2025, 10, 23, 23, 59, 59, 999999), size) == Window(at(2025, 10, 23, last_start),
                                                                            at(2025, 10, 24, 0))
    assert floor_window(at(2025, 10, 23, 0, 0, 0, 1), size) == at(2025, 10, 23, 0)
    assert floor_window(at(2025, 10, 23, hours % 24, 0), size) == at(2025, 10, 23, hours % 24)


@pytest.mark.parametrize("hours", [0, -4, 5, 7, 48])
def test_window_sizes_that_do_not_divide_a_day_are_refused(hours):
    with pytest.raises(ValueError):
        window_size(hours)


def test_ceil_window():
    assert ceil_window(at(2025, 10, 23, 4), FOUR) == at(2025, 10, 23, 4)
    assert ceil_window(at(2025, 10, 23, 4, 0, 0, 1), FOUR) == at(2025, 10, 23, 8)


def test_last_closed_boundary_waits_for_the_settle_time():
    assert last_closed_boundary(at(2025, 10, 23, 4, 0, 10), FOUR, timedelta(seconds=30)) == at(2025, 10, 23, 0)
    assert last_closed_boundary(at(2025, 10, 23, 4, 1), FOUR, timedelta(seconds=30)) == at(2025, 10, 23, 4)


@pytest.mark.parametrize("text", ["2025-10-23t13:07:00Z", "2025-10-23T13:07:00z", "2025-10-23t13:07:00z",
                                  "2025-10-23 13:07:00+00:00"])
def test_rfc3339_letters_may_be_lowercase(text):
    assert parse_rfc3339(text) == datetime(2025, 10, 23, 13, 7, tzinfo=UTC)


def test_parsed_times_are_utc_whatever_the_machine_s_time_zone(monkeypatch):
    """An offset is turned into UTC itself, not into the zone of the machine that parses it."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        parsed = parse_rfc3339("2025-10-23T13:07:00+02:00")
    finally:
        monkeypatch.undo()
        time.tzset()
    assert parsed.utcoffset() == timedelta(0)
    assert (parsed.hour, parsed.minute) == (11, 7)
