"""Window arithmetic for the metrics: aligned, half-open UTC windows.

A window of size S hours covers `[start, start + S)` where `start` is a
multiple of S hours after midnight UTC. Everything here is pure so the
boundaries can be tested without a database or a clock.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True, order=True)
class Window:
    start: datetime
    end: datetime


def window_size(hours: int) -> timedelta:
    """The size of a window; it must divide a day so windows align with midnight UTC."""
    if hours <= 0 or 24 % hours:
        raise ValueError(f"window size of {hours} hours does not divide 24 hours")
    return timedelta(hours=hours)


def _require_aware(moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware")


def floor_window(moment: datetime, size: timedelta) -> datetime:
    """Start of the window that contains `moment` (whatever its offset), in UTC."""
    _require_aware(moment)
    offset = (moment - EPOCH) // size
    return EPOCH + offset * size


def window_of(moment: datetime, size: timedelta) -> Window:
    start = floor_window(moment, size)
    return Window(start, start + size)


def ceil_window(moment: datetime, size: timedelta) -> datetime:
    """The first window boundary at or after `moment`."""
    start = floor_window(moment, size)
    return start if start == moment else start + size


def last_closed_boundary(now: datetime, size: timedelta, settle: timedelta = timedelta(0)) -> datetime:
    """End of the newest window that closed at least `settle` before `now`."""
    return floor_window(now - settle, size)
