"""Pure parts of the dashboard: reading the filter forms, and the chart's geometry."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from app.core.errors import ValidationError
from app.services.metrics import WindowTotal
from app.web.chart import CHART_VARIANTS, bar_chart, nice_scale
from app.web.forms import parse_event_form, parse_local_time, parse_metadata_pair

UTC = timezone.utc
DAY0 = datetime(2025, 10, 20, tzinfo=UTC)
FOUR_HOURS = timedelta(hours=4)
WIDE, NARROW = CHART_VARIANTS


@pytest.mark.parametrize(("text", "expected"), [
    ("2025-10-20T13:07", datetime(2025, 10, 20, 13, 7, tzinfo=UTC)),
    ("2025-10-20T13:07:05", datetime(2025, 10, 20, 13, 7, 5, tzinfo=UTC)),
    ("2025-10-20 13:07", datetime(2025, 10, 20, 13, 7, tzinfo=UTC)),
    ("2025-10-20T15:07:00+02:00", datetime(2025, 10, 20, 13, 7, tzinfo=UTC)),
])
def test_datetime_local_values_are_read_as_utc(text, expected):
    assert parse_local_time(text, "from") == expected


@pytest.mark.parametrize(("text", "message"), [
    ("2025-02-30T10:00", "is not a real date and time"),
    ("20/10/2025", "must be a date and time such as 2025-10-23T13:07 (UTC)"),
    ("2025-10-20", "must be a date and time such as 2025-10-23T13:07 (UTC)"),
])
def test_bad_times_say_what_is_wrong(text, message):
    with pytest.raises(ValidationError) as raised:
        parse_local_time(text, "till")
    assert (raised.value.message, raised.value.field) == (message, "till")


def test_metadata_pair_takes_the_first_equals_sign():
    assert parse_metadata_pair("page = /home") == {"page": "/home"}
    assert parse_metadata_pair("query=a=b") == {"query": "a=b"}
    for bad in ("page", "= /home", "page ="):
        with pytest.raises(ValidationError):
            parse_metadata_pair(bad)


def test_event_form_keeps_what_was_typed_and_builds_its_canonical_query():
    form = parse_event_form({"user_id": " 42 ", "action": "", "meta": "page = /home", "from": "2025-10-20T10:00",
                             "live": "1", "utm_source": "ignored"})
    assert form.valid
    assert form.query() == {"user_id": "42", "meta": "page = /home", "from": "2025-10-20T10:00", "live": "1"}
    assert form.event_filter().metadata == {"page": "/home"}
    assert form.local_time("from") == "2025-10-20T10:00"
    assert form.live is True


def test_nice_scale_rounds_up_to_one_two_five_steps():
    assert nice_scale(0) == (1, 1)
    assert nice_scale(3) == (3, 1)
    assert nice_scale(22) == (30, 10)
    assert nice_scale(1234) == (1500, 500)


def totals(states_and_counts):
    return [WindowTotal(DAY0 + i * FOUR_HOURS, DAY0 + (i + 1) * FOUR_HOURS, 1 if events else 0, events, {}, state)
            for i, (state, events) in enumerate(states_and_counts)]


def test_closed_windows_not_counted_yet_are_marked_apart_from_zero_bars():
    chart = bar_chart(totals([("counted", 10), ("counted", 0), ("pending", 0), ("open", 0)]), FOUR_HOURS, WIDE)
    assert [bar.uncounted for bar in chart.bars] == [False, False, True, False]
    assert chart.bars[1].height == 0 and chart.bars[2].height > 0
    assert chart.bars[2].label == "Oct 20 08:00–12:00 UTC: not counted yet"
    assert chart.has_uncounted
    assert chart.bars[0].value == "10" and chart.bars[2].value is None


@pytest.mark.parametrize("variant", CHART_VARIANTS, ids=lambda variant: variant.name)
def test_a_window_not_counted_yet_is_a_few_units_high_on_the_baseline_whatever_the_scale(variant):
    """One event per window or a thousand: the mark of a window no run has counted stays the same small height,
    resting on the axis, and the y axis goes as high as the counted windows need, no higher."""
    marks = []
    for events in (1, 1000):
        chart = bar_chart(totals([("counted", events), ("pending", 0), ("counted", events)]), FOUR_HOURS, variant)
        baseline = chart.height - chart.bottom
        counted, mark, _ = chart.bars
        assert mark.uncounted and mark.value is None
        assert mark.y + mark.height == baseline
        assert chart.y_ticks[-1].label == f"{events:,}" and chart.y_ticks[-1].position == counted.y == chart.top
        marks.append(mark.height)
    assert marks[0] == marks[1] <= 8


def test_a_window_pending_a_recount_keeps_its_stored_height():
    chart = bar_chart(totals([("counted", 10), ("pending", 5)]), FOUR_HOURS, WIDE)
    counted, recount = chart.bars
    assert not recount.uncounted and recount.height == counted.height / 2 and recount.value == "5"
    assert recount.label == "Oct 20 04:00–08:00 UTC: 5 events from 1 users (a recount is pending)"
    assert not chart.has_uncounted


def test_the_open_window_is_a_distinct_bar_at_its_height_so_far():
    chart = bar_chart(totals([("counted", 10), ("open", 5)]), FOUR_HOURS, WIDE)
    counted, in_progress = chart.bars
    assert [counted.open, in_progress.open] == [False, True] and not in_progress.uncounted
    assert in_progress.height == counted.height / 2 and in_progress.value == "5"
    assert in_progress.label == "Oct 20 04:00–08:00 UTC: in progress, 5 events from 1 users so far (not final)"
    assert chart.has_open and not chart.has_uncounted


def test_many_windows_are_labelled_at_midnights_and_fewer_on_the_narrow_chart():
    week = totals([("counted", i % 7) for i in range(42)])
    wide = bar_chart(week, FOUR_HOURS, WIDE)
    narrow = bar_chart(week, FOUR_HOURS, NARROW)
    assert [label.lines for label in wide.x_labels][:2] == [("00:00", "Oct 20"), ("00:00", "Oct 21")]
    assert len(wide.x_labels) == 7 and len(narrow.x_labels) <= 4
    assert all(bar.value is None for bar in wide.bars), "no value labels when bars are thin"
    assert bar_chart([], FOUR_HOURS, WIDE) is None
