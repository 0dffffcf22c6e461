"""Geometry of the metrics page's bar chart, drawn as inline SVG by its template.

Server-side drawing needs no script and no library, works offline and under a
strict Content-Security-Policy. This module only computes positions and
labels; the template writes the SVG, so every label is escaped like any text.

Text in an SVG scales with it, so one drawing cannot be legible both on a
phone and on a wide screen: each chart comes in a wide and a narrow variant,
and the stylesheet shows the one that fits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ..services.metrics import WindowTotal

LEFT, RIGHT, TOP, BOTTOM = 48, 12, 28, 48
MAX_BAR_WIDTH = 48
# A closed window no run has counted has no known height: it gets a mark this tall on the baseline,
# whatever the scale, so it never reads as a count.
UNCOUNTED_MARK_HEIGHT = 6


@dataclass(frozen=True)
class Variant:
    """One drawing size: its viewBox, and how many labels fit in it."""

    name: str
    width: int
    height: int
    max_x_labels: int
    value_labels_up_to: int


CHART_VARIANTS = (
    Variant("wide", 720, 260, max_x_labels=10, value_labels_up_to=16),
    Variant("narrow", 360, 240, max_x_labels=4, value_labels_up_to=8),
)


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: str | None
    uncounted: bool
    open: bool


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class XLabel:
    x: float
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Chart:
    variant: str
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    bars: list[Bar]
    y_ticks: list[Tick]
    x_labels: list[XLabel]
    summary: str
    has_uncounted: bool
    has_open: bool


def nice_scale(maximum: int, ticks: int = 4) -> tuple[int, int]:
    """A round top for the y axis and the step between its ticks (1, 2 or 5 times a power of ten)."""
    if maximum <= 0:
        return 1, 1
    raw = maximum / ticks
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return step * math.ceil(maximum / step), int(step)


def _day(moment: datetime) -> str:
    return f"{moment:%b} {moment.day}"


def window_text(start: datetime, end: datetime) -> str:
    """`Oct 20 04:00–08:00 UTC`: a window as a person names it."""
    start, end = start.astimezone(timezone.utc), end.astimezone(timezone.utc)
    return f"{_day(start)} {start:%H:%M}–{end:%H:%M} UTC"


def span_text(total: WindowTotal) -> str:
    return window_text(total.window_start, total.window_end)


def describe(total: WindowTotal) -> str:
    """What one bar says, for its tooltip and for screen readers."""
    if total.state == "open":
        return (f"{span_text(total)}: in progress, {total.events:,} events from {total.users:,} users so far "
                "(not final)")
    if total.state == "pending" and not total.events:
        return f"{span_text(total)}: not counted yet"
    text = f"{span_text(total)}: {total.events:,} events from {total.users:,} users"
    return text + " (a recount is pending)" if total.state == "pending" else text


def _x_labels(starts: list[datetime], slot: float, size: timedelta, limit: int) -> list[XLabel]:
    """Every window when they fit; otherwise midnights (UTC), thinned to fit."""
    def centre(index: int) -> float:
        return round(LEFT + slot * (index + 0.5), 2)

    if len(starts) <= limit:
        return [XLabel(centre(i), (f"{start:%H:%M}",) + ((_day(start),) if i == 0 or start.hour == 0 else ()))
                for i, start in enumerate(starts)]
    midnights = [i for i, start in enumerate(starts) if start.hour == 0 and start.minute == 0]
    if size < timedelta(days=1) and len(midnights) >= 2:
        stride = math.ceil(len(midnights) / limit)
        return [XLabel(centre(i), ("00:00", _day(starts[i]))) for i in midnights[::stride]]
    stride = math.ceil(len(starts) / limit)
    return [XLabel(centre(i), (f"{starts[i]:%H:%M}", _day(starts[i]))) for i in range(0, len(starts), stride)]


def bar_chart(totals: list[WindowTotal], size: timedelta, variant: Variant) -> Chart | None:
    """Bars of events per window, oldest on the left; None when there is no window to draw.

    Closed windows not counted yet get a short hatched mark of a fixed height
    on the baseline instead of a bar: a missing count reads neither as zero
    nor as a count, and only counts scale the y axis. Open windows are drawn
    at their height so far, in a style of their own: they are not final.
    """
    if not totals:
        return None
    plot_width = variant.width - LEFT - RIGHT
    plot_height = variant.height - TOP - BOTTOM
    baseline = TOP + plot_height
    top_value, step = nice_scale(max(total.events for total in totals))
    slot = plot_width / len(totals)
    bar_width = min(slot * 0.72, MAX_BAR_WIDTH)
    bars = []
    for index, total in enumerate(totals):
        opened = total.state == "open"
        uncounted = total.state == "pending" and not total.events
        height = UNCOUNTED_MARK_HEIGHT if uncounted else plot_height * total.events / top_value
        bars.append(Bar(
            x=round(LEFT + slot * index + (slot - bar_width) / 2, 2),
            y=round(baseline - height, 2),
            width=round(bar_width, 2),
            height=round(height, 2),
            label=describe(total),
            value=f"{total.events:,}" if len(totals) <= variant.value_labels_up_to and not uncounted else None,
            uncounted=uncounted,
            open=opened,
        ))
    ticks = [Tick(round(baseline - plot_height * value / top_value, 2), f"{value:,}")
             for value in range(0, top_value + 1, step)]
    events = sum(total.events for total in totals)
    busiest = max(totals, key=lambda total: total.events)
    summary = f"{events:,} events in {len(totals)} windows"
    if busiest.events:
        summary += f"; the busiest, {span_text(busiest)}, had {busiest.events:,}"
    starts = [total.window_start.astimezone(timezone.utc) for total in totals]
    return Chart(variant.name, variant.width, variant.height, LEFT, RIGHT, TOP, BOTTOM, bars, ticks,
                 _x_labels(starts, slot, size, variant.max_x_labels), summary,
                 any(bar.uncounted for bar in bars), any(bar.open for bar in bars))
