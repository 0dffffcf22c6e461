"""The time partitions of `events`: which partition holds a moment, its name and bounds.

`events` is range-partitioned on `occurred_at` into spans of `SPAN` (one UTC
day: chosen by measurement, see bench/RESULTS-scale.md). A partition covers
the half-open `[start, start + SPAN)` and is named after its first day, so
its name sorts with time. Pure arithmetic: the catalogue work is in
`app/services/partitions.py`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

PARENT = "events"
SPAN = timedelta(days=1)
# Spans are counted from a Monday at midnight UTC, so a span of 1 day starts at midnight and
# one of 7 days (which the benchmark compares against) on a Monday.
ORIGIN = datetime(2000, 1, 3, tzinfo=timezone.utc)


@dataclass(frozen=True, order=True)
class Partition:
    """One partition's range `[start, end)` of occurred_at."""

    start: datetime
    end: datetime
    parent: str = field(default=PARENT, compare=False)

    @property
    def name(self) -> str:
        # Explicit padding: strftime's %Y does not pad years before 1000.
        return f"{self.parent}_p{self.start.year:04d}{self.start.month:02d}{self.start.day:02d}"


def floor_span(moment: datetime, span: timedelta = SPAN) -> datetime:
    """Start of the span holding `moment`, in UTC."""
    if moment.tzinfo is None:
        raise ValueError("datetime must be timezone-aware")
    return ORIGIN + ((moment - ORIGIN) // span) * span


def partition_of(moment: datetime, span: timedelta = SPAN) -> Partition:
    start = floor_span(moment, span)
    return Partition(start, start + span)


def partitions_covering(start: datetime, end: datetime, span: timedelta = SPAN) -> list[Partition]:
    """Every partition that overlaps `[start, end)`, oldest first (one for an instant, start == end)."""
    first = floor_span(start, span)
    count = max(1, -((first - end) // span))
    return [Partition(first + i * span, first + (i + 1) * span) for i in range(count)]


def partitions_for(moments: list[datetime], span: timedelta = SPAN) -> list[Partition]:
    """The distinct partitions these moments fall into, oldest first."""
    return sorted({partition_of(moment, span) for moment in moments})


def retention_floor(now: datetime, days: int, span: timedelta = SPAN) -> datetime:
    """Start of the oldest partition a retention of `days` keeps.

    A partition is dropped once all of it is older than the limit, i.e. when its
    end is at or before `now - days`; the one holding `now - days` stays.
    """
    return floor_span(now - timedelta(days=days), span)
