"""The metrics page: windows, chart, history, schedule, and the Recalculate button with a real worker."""
from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone

import pytest

from app.extensions import runtime, settings
from app.jobs.queue import calculation_queue
from app.jobs.schedule import make_scheduler, sync_periodic_jobs
from app.jobs.calculations import CALCULATE_FUNC
from tests.helpers import csrf_token_of, post_event, separate_app

UTC = timezone.utc
DAY0 = datetime(2025, 10, 20, tzinfo=UTC)
HTMX = {"HX-Request": "true"}
DAY0_RANGE = "from=2025-10-20T00:00&till=2025-10-21T00:00"


def store(client, user_id, when, action="page_view"):
    response = post_event(client, user_id=user_id, action=action, occurred_at=when.isoformat())
    assert response.status_code == 201


def seed(client):
    store(client, 321, DAY0 + timedelta(hours=1))
    store(client, 321, DAY0 + timedelta(hours=2), action="click")
    store(client, 322, DAY0 + timedelta(hours=3), action="click")
    store(client, 322, DAY0 + timedelta(hours=9))


def window_rows(html: str) -> list[tuple[str, int, int]]:
    """(window start, users, events) of each row of the windows table."""
    return [(start, int(users), int(events)) for start, users, events in re.findall(
        r'<th scope="row" class="col-time"><time datetime="([^"]+)">.*?data-label="Users">(\d+)</td>\s*'
        r'<td class="col-num" data-label="Events">(\d+)</td>', html, re.S)]


def job_poll_url(html: str) -> str | None:
    found = re.search(r'hx-get="(/metrics/jobs/[^"]+)" hx-trigger="load delay:1s"', html)
    return found.group(1) if found else None


def test_full_page_and_fragment(client):
    page = client.get("/metrics")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "<html" in html
    assert 'aria-current="page">Metrics' in html
    assert 'hx-trigger="metrics-updated from:body"' in html
    part = client.get("/metrics?user_id=5", headers=HTMX)
    body = part.get_data(as_text=True)
    assert part.status_code == 200 and "<html" not in body and "<form" not in body
    assert body.lstrip().startswith('<section id="metric-results"')
    assert 'hx-get="/metrics?user_id=5"' in body, "the refreshed results keep their own filter"
    assert '<p id="user_id-error" class="field-error" hx-swap-oob="true"></p>' in body


@pytest.mark.parametrize(("query", "field", "message"), [
    ("user_id=-1", "user_id", "must be a positive integer"),
    ("from=2025-02-30T00:00", "from", "is not a real date and time"),
    ("from=2025-10-21T00:00&till=2025-10-20T00:00", "till", "must not be before `from`"),
])
def test_invalid_filters_are_named_inline_with_400(client, query, field, message):
    page = client.get(f"/metrics?{query}")
    assert page.status_code == 400
    assert f'<p id="{field}-error" class="field-error">{message}</p>' in page.get_data(as_text=True)
    part = client.get(f"/metrics?{query}", headers=HTMX)
    assert part.status_code == 400
    body = part.get_data(as_text=True)
    assert f'<p id="{field}-error" class="field-error" hx-swap-oob="true">{message}</p>' in body
    assert "Fix the filter marked above to see metrics." in body
    assert "Recent calculation runs" in body, "the history does not depend on the filter"


def last_run_text(html: str) -> str:
    """What "Last computed" says, tags dropped."""
    found = re.search(r'<dd id="last-run">(.*?)</dd>', html, re.S)
    assert found, "the page has a Last computed fact"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", found.group(1))).strip()


def empty_text(html: str) -> str:
    found = re.search(r'<p class="empty">\s*<strong>No metrics in these windows.</strong>(.*?)</p>', html, re.S)
    assert found, "the windows table is empty"
    return re.sub(r"\s+", " ", found.group(1)).strip()


def test_empty_state_before_anything_is_computed(client):
    html = client.get("/metrics").get_data(as_text=True)
    assert empty_text(html) == "No closed window in this range holds events yet."
    assert "No calculation has run yet." in html
    assert last_run_text(html) == "never"
    assert "<dd>4 hours</dd>" in html and "in windows of 4 hours" in html


def test_empty_state_says_why_the_table_is_empty(client, runner):
    store(client, 7, DAY0 + timedelta(hours=1))
    html = client.get(f"/metrics?{DAY0_RANGE}").get_data(as_text=True)
    assert empty_text(html) == ("1 closed window holds events that no run has counted yet: "
                                "the next scheduled run counts it, or press Recalculate now.")
    assert runner.invoke(args=["calculate-metrics"]).exit_code == 0
    other_user = client.get(f"/metrics?user_id=8&{DAY0_RANGE}").get_data(as_text=True)
    assert empty_text(other_user) == "No closed window in this range holds events of user 8 yet."


def chart_drawings(html: str) -> list[tuple[float, list[float], list[tuple[float, float]]]]:
    """Per drawing (wide, narrow): the y of its x axis, the heights of its bars, and (y, height) of each mark
    of a window not counted yet."""
    drawings = []
    for svg in re.findall(r'<svg class="chart-svg.*?</svg>', html, re.S):
        axis = float(re.search(r'<g class="chart-axis".*?<line [^>]*y1="([^"]+)"', svg, re.S).group(1))
        bars = [float(height) for height in re.findall(r'<rect class="bar" [^>]*height="([^"]+)"', svg)]
        marks = [(float(y), float(height)) for y, height in
                 re.findall(r'<rect class="bar-uncounted" [^>]*y="([^"]+)" [^>]*height="([^"]+)"', svg)]
        drawings.append((axis, bars, marks))
    return drawings


def test_a_window_no_run_has_counted_is_a_short_mark_on_the_axis_not_a_bar(client, runner):
    """One event in each of two windows, only the first counted: the second gets no made-up height."""
    store(client, 7, DAY0 + timedelta(hours=1))
    store(client, 7, DAY0 + timedelta(hours=5))
    counted = ["--from", "2025-10-20T00:00:00Z", "--till", "2025-10-20T04:00:00Z"]
    assert runner.invoke(args=["calculate-metrics", *counted]).exit_code == 0
    html = client.get(f"/metrics?{DAY0_RANGE}").get_data(as_text=True)
    drawings = chart_drawings(html)
    assert len(drawings) == 2
    for axis, bars, marks in drawings:
        (mark_y, mark_height), = marks
        assert 0 < mark_height <= 8 < max(bars) and mark_y + mark_height == axis
    assert 'aria-label="Oct 20 04:00–08:00 UTC: not counted yet"' in html
    assert re.search(r'legend-uncounted" aria-hidden="true"></span> not counted yet \(height unknown\)', html)


def test_last_computed_is_the_last_finished_run_even_when_it_counted_nothing(client, runner):
    store(client, 7, DAY0 + timedelta(hours=1))
    store(client, 8, DAY0 + timedelta(hours=2), action="click")
    assert runner.invoke(args=["calculate-metrics"]).exit_code == 0
    counted = last_run_text(client.get("/metrics").get_data(as_text=True))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(counted 2 events of 2 users in 1 window\)", counted), counted
    assert runner.invoke(args=["calculate-metrics"]).exit_code == 0
    nothing = last_run_text(client.get("/metrics").get_data(as_text=True))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(nothing closed to count\)", nothing), nothing


def test_windows_table_chart_and_history_after_a_run(client, runner):
    seed(client)
    assert runner.invoke(args=["calculate-metrics"]).exit_code == 0
    html = client.get(f"/metrics?{DAY0_RANGE}").get_data(as_text=True)
    assert window_rows(html) == [("2025-10-20T08:00:00.000000Z", 1, 1), ("2025-10-20T00:00:00.000000Z", 2, 3)]
    assert '<span class="breakdown-name">click</span> <span class="breakdown-count">2</span>' in html
    assert 'aria-label="Oct 20 00:00–04:00 UTC: 3 events from 2 users"' in html
    assert 'aria-label="Oct 20 04:00–08:00 UTC: 0 events from 0 users"' in html
    assert "<title>Oct 20 00:00–04:00 UTC: 3 events from 2 users</title>" in html
    assert html.count('<svg class="chart-svg') == 2
    assert "4 events in 6 windows; the busiest, Oct 20 00:00–04:00 UTC, had 3" in html
    assert "6 windows starting" in html
    assert last_run_text(html).endswith("(counted 4 events of 2 users in 2 windows)")
    assert '<span class="status status-finished">finished</span>' in html
    assert re.search(r'data-label="Trigger">cli</td>', html)

    one_user = client.get(f"/metrics?user_id=322&{DAY0_RANGE}").get_data(as_text=True)
    assert window_rows(one_user) == [("2025-10-20T08:00:00.000000Z", 1, 1), ("2025-10-20T00:00:00.000000Z", 1, 1)]


def test_without_a_range_the_page_opens_on_the_newest_metrics(client, runner):
    seed(client)
    assert runner.invoke(args=["calculate-metrics"]).exit_code == 0
    html = client.get("/metrics").get_data(as_text=True)
    assert [start for start, _, _ in window_rows(html)] == ["2025-10-20T08:00:00.000000Z",
                                                             "2025-10-20T00:00:00.000000Z"]
    assert "42 windows starting 2025-10-13" in html.replace('<time datetime="2025-10-13T12:00:00.000000Z">', "")
    assert "Set From to look further back." in html


def test_a_from_without_till_opens_on_the_newest_metrics_from_that_window_on(client, runner):
    """From set on the very window of the newest metrics: the page ends there, not at an empty present."""
    seed(client)
    assert runner.invoke(args=["calculate-metrics"]).exit_code == 0
    html = client.get("/metrics?from=2025-10-20T08:00").get_data(as_text=True)
    assert window_rows(html) == [("2025-10-20T08:00:00.000000Z", 1, 1)]


def test_a_long_range_is_cut_to_the_latest_windows(client, runner):
    seed(client)
    assert runner.invoke(args=["calculate-metrics"]).exit_code == 0
    html = client.get("/metrics?from=2025-09-01T00:00&till=2025-10-21T00:00").get_data(as_text=True)
    assert "The range holds more windows; only the latest 42 are shown." in html


def test_next_scheduled_run_is_shown_or_explained(app, client):
    assert "not scheduled" in client.get("/metrics").get_data(as_text=True)
    with app.app_context():
        sync_periodic_jobs(make_scheduler(runtime().background_redis, settings()), settings(), datetime.now(timezone.utc))
    html = client.get("/metrics").get_data(as_text=True)
    due = re.search(r"<dt>Next scheduled run</dt>\s*<dd><time datetime=\"([^\"]+)\">", html)
    assert due and due.group(1)[14:16] == "01"


def test_redis_down_leaves_the_page_working(app_config):
    with separate_app({**app_config, "REDIS_URL": "redis://127.0.0.1:1/0"}) as down:
        check_pages_without_redis(down.test_client())


def check_pages_without_redis(client):
    page = client.get("/metrics")
    assert page.status_code == 200
    assert "unknown <span class=\"muted\">(the job queue is unavailable)</span>" in page.get_data(as_text=True)
    pressed = client.post("/metrics/recalculate", headers={**HTMX, "X-CSRF-Token": csrf_token_of(client)})
    assert pressed.status_code == 503
    body = pressed.get_data(as_text=True)
    assert "unavailable right now, so nothing was queued" in body
    assert "<html" not in body and job_poll_url(body) is None
    # A job id of this deployment (another namespace's is unknown without asking Redis).
    job_id = f"{client.application.extensions['tracking.runtime'].settings.redis_namespace}-calculate-some-job"
    polled = client.get(f"/metrics/jobs/{job_id}", headers=HTMX)
    assert polled.status_code == 503
    assert job_poll_url(polled.get_data(as_text=True)) == f"/metrics/jobs/{job_id}", "keeps trying"


def test_pressing_recalculate_twice_follows_the_same_job(app, client):
    first = client.post("/metrics/recalculate", headers={**HTMX, "X-CSRF-Token": csrf_token_of(client)})
    assert first.status_code == 200
    html = first.get_data(as_text=True)
    assert "<html" not in html and "Queued, waiting for a worker" in html
    url = job_poll_url(html)
    assert url and url.startswith("/metrics/jobs/")
    second = client.post("/metrics/recalculate", headers={**HTMX, "X-CSRF-Token": csrf_token_of(client)})
    assert job_poll_url(second.get_data(as_text=True)) == url
    with app.app_context():
        assert len(calculation_queue(runtime().background_redis, settings().redis_namespace)) == 1


def test_recalculate_without_javascript_redirects_to_the_job_page(client):
    response = client.post("/metrics/recalculate", data={"csrf_token": csrf_token_of(client)})
    assert response.status_code == 303
    page = client.get(response.headers["Location"])
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "<html" in html
    assert "Queued, waiting for a worker" in html and "reload this page to follow the job" in html


def test_unknown_job_is_a_404_that_stops_polling(client):
    response = client.get("/metrics/jobs/nope", headers=HTMX)
    assert response.status_code == 404
    body = response.get_data(as_text=True)
    assert "No such job" in body and job_poll_url(body) is None


def poll_until_done(client, url: str, timeout: float = 30.0) -> tuple[str, list[str], dict[str, str]]:
    """Follow the status fragment as htmx would, until it stops polling; the statuses seen on the way."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(url, headers=HTMX)
        body = response.get_data(as_text=True)
        status = re.search(r'class="job job-([a-z]+)"', body).group(1)
        if not seen or seen[-1] != status:
            seen.append(status)
        if job_poll_url(body) is None:
            return body, seen, dict(response.headers)
        time.sleep(0.05)
    raise AssertionError(f"the job did not end; statuses seen: {seen}")


def test_recalculate_runs_on_the_real_worker_and_the_numbers_appear(client, worker):
    seed(client)
    before = client.get(f"/metrics?{DAY0_RANGE}", headers=HTMX).get_data(as_text=True)
    assert window_rows(before) == []
    pressed = client.post("/metrics/recalculate", headers={**HTMX, "X-CSRF-Token": csrf_token_of(client)}).get_data(as_text=True)
    body, seen, headers = poll_until_done(client, job_poll_url(pressed))
    assert seen[-1] == "finished", seen
    assert headers["HX-Trigger"] == "metrics-updated"
    assert "Finished</strong>: counted 4 events of 2 users in" in body
    after = client.get(f"/metrics?{DAY0_RANGE}", headers=HTMX).get_data(as_text=True)
    assert window_rows(after) == [("2025-10-20T08:00:00.000000Z", 1, 1), ("2025-10-20T00:00:00.000000Z", 2, 3)]
    assert "manual" in after


def test_a_failed_job_shows_its_error_and_stops(app, client, worker):
    with app.app_context():
        job = calculation_queue(runtime().background_redis, settings().redis_namespace).enqueue_call(CALCULATE_FUNC, kwargs={"start": "not-a-time", "end": "x"},
                                           job_id=f"{settings().redis_namespace}-failing")
    body, seen, headers = poll_until_done(client, f"/metrics/jobs/{job.id}")
    assert seen[-1] == "failed"
    assert "<strong>Failed</strong>" in body
    assert "RFC 3339" in re.search(r'<p class="job-error">([^<]+)</p>', body).group(1)
    assert headers["HX-Trigger"] == "metrics-updated"


def test_recent_metrics_are_shown_up_to_the_window_still_open(client, runner):
    now = datetime.now(UTC)
    store(client, 5, now - timedelta(hours=9))
    assert runner.invoke(args=["calculate-metrics"]).exit_code == 0
    html = client.get("/metrics").get_data(as_text=True)
    assert ": in progress, 0 events from 0 users so far (not final)" in html
    assert len(window_rows(html)) == 1


def open_counts(html: str) -> list[str]:
    """The "N events from M users so far" line of each window in progress that holds events.

    (In the settle time after a boundary the window just ended is still open too, and empty.)
    """
    lines = [re.sub(r"<[^>]+>", "", line) for line in re.findall(r'<p class="open-window-counts">(.*?)</p>', html, re.S)]
    return [line for line in lines if not line.startswith("0 events")]


def test_the_window_in_progress_is_counted_live_before_any_run(client, runner):
    now = datetime.now(UTC).replace(microsecond=0)
    store(client, 41, now)
    store(client, 41, now, action="click")
    store(client, 42, now, action="click")
    store(client, 42, now - timedelta(days=2))  # closed: not part of the open window
    html = client.get("/metrics").get_data(as_text=True)
    assert open_counts(html) == ["3 events from 2 users so far."]
    assert '<span class="breakdown-name">click</span> <span class="breakdown-count">2</span>' in html
    assert "Not final and not stored: counted live from the events" in html
    assert re.search(r'aria-label="[^"]+: in progress, 3 events from 2 users so far \(not final\)"', html)
    assert 'class="bar-open"' in html and "in progress, so far (not final)" in html
    assert 'hx-get="/metrics/live?run=0" hx-trigger="every 5s" hx-swap="outerHTML"' in html
    assert open_counts(client.get("/metrics?user_id=42").get_data(as_text=True)) == [
        "1 event from 1 user so far (user 42)."]

    store(client, 43, now)
    live = client.get("/metrics/live?run=0", headers=HTMX)
    body = live.get_data(as_text=True)
    assert live.status_code == 200 and body.lstrip().startswith('<section id="metrics-live"')
    assert open_counts(body) == ["4 events from 3 users so far."]
    assert "HX-Trigger" not in live.headers, "no run has finished since the page was drawn"

    assert runner.invoke(args=["calculate-metrics"]).exit_code == 0
    after_run = client.get("/metrics/live?run=0", headers=HTMX)
    assert after_run.headers["HX-Trigger"] == "metrics-updated", "a run finished: the whole results refresh"
    assert open_counts(after_run.get_data(as_text=True)) == ["4 events from 3 users so far."], "still not final"
    assert client.get("/metrics/live").status_code == 302, "without htmx: the page itself"


def test_no_live_polling_when_the_range_holds_no_open_window(client):
    store(client, 41, datetime.now(UTC))
    html = client.get(f"/metrics?{DAY0_RANGE}").get_data(as_text=True)
    assert open_counts(html) == [] and "/metrics/live" not in html
