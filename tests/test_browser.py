"""The dashboard in a real headless Chromium, against the app served on 127.0.0.1 with a real worker.

The app sends its strict Content-Security-Policy (`script-src 'self'`,
`style-src 'self'`, see app/http/headers.py), so an inline script or style shows
up here as a console error and fails the test. Skipped, with the reason, only
where Chromium or chromedriver is not installed (.ci/run installs them).

One browser serves the whole module, and each test starts and ends on
about:blank. A dashboard page left open keeps polling (htmx `every 5s`: the
metrics page's window in progress, the live event list) after its test's
server has stopped; each poll then fails and htmx logs `htmx:sendError` with
console.error, into the log of whichever test runs next, which failed for it
whenever it spent a poll interval between its start and its first page (a
worker to start, events to seed).
"""
from __future__ import annotations

import functools
import json
import os
import random
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from app.web.chart import window_text
from app.web.events import LIVE_INTERVAL_SECONDS
from tests.helpers import catch_up_held_at, post_event

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", shutil.which("chromedriver") or "/usr/bin/chromedriver")
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage", "--hide-scrollbars")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "screenshots"
WAIT_SECONDS = 30
UTC = timezone.utc
DAY0 = datetime(2025, 10, 20, tzinfo=UTC)

if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.skip(f"browser tests need Chromium and chromedriver ({CHROMIUM}, {CHROMEDRIVER}); "
                "install them with: apt-get install -y chromium chromium-driver", allow_module_level=True)

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument("--window-size=1280,900")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (the stdlib's name)
        pass


@pytest.fixture(scope="module")
def other_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A second origin: a plain static file server on another port, like the original's React app on :3000."""
    root = tmp_path_factory.mktemp("other-origin")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    thread.join(timeout=10)
    httpd.server_close()


@pytest.fixture
def app_config(app_config: dict[str, object], other_origin: tuple[str, Path]) -> dict[str, object]:
    """The API lets pages of the second origin call it, as the original's compose configured it."""
    return {**app_config, "CORS_ALLOWED_ORIGINS": other_origin[0]}


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """`app` on a free port of 127.0.0.1, served from a background thread until the block ends."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join(timeout=10)
        httpd.server_close()


@pytest.fixture
def server(app: Flask) -> Iterator[str]:
    """The test app on a free port of 127.0.0.1, served from a background thread."""
    with serving(app) as url:
        yield url


@contextmanager
def page_for_a_test(browser: Any) -> Iterator[Any]:
    """The browser for one test, on about:blank; fails the test if a page logged a script or security error
    (CSP included) meanwhile.

    It leaves the browser on about:blank again before the test's server stops (`page` is torn down before
    `server`), so no page of this test polls on into the next one (see the module's docstring). Only the
    test's own entries count: the log is emptied on arriving, and again after leaving, since leaving aborts
    a request in flight (htmx logs that too). Network entries are left out: the 400 of an invalid filter is
    logged too, and is meant.
    """
    leave(browser)  # a page that a failed teardown left behind stops here
    yield browser
    errors = [entry["message"] for entry in browser.get_log("browser")
              if entry["level"] == "SEVERE" and entry.get("source") != "network"]
    leave(browser)
    assert not errors, errors


def leave(browser: Any) -> None:
    """Go to about:blank, which ends the page's timers and requests, and forget what the browser logged."""
    browser.get("about:blank")
    browser.get_log("browser")


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    with page_for_a_test(browser) as browser_for_the_test:
        yield browser_for_the_test


def wait(browser: Any, condition: Callable[[Any], Any], what: str) -> Any:
    """Poll `condition` until it holds; an element htmx swapped out meanwhile just means "not yet"."""
    return WebDriverWait(browser, WAIT_SECONDS, poll_frequency=0.05,
                         ignored_exceptions=(StaleElementReferenceException,)).until(condition, message=what)


def store(client: Any, user_id: int, when: datetime, action: str = "page_view", **metadata: Any) -> None:
    response = post_event(client, user_id=user_id, action=action, occurred_at=when.isoformat(), metadata=metadata)
    assert response.status_code == 201


def row_users(browser: Any) -> list[str]:
    return [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#event-rows td.col-user")]


def test_typing_a_user_id_filters_in_place_and_back_restores_the_previous_view(page, server, client):
    for minute, user_id in enumerate((1, 2, 1, 2, 1)):
        store(client, user_id, DAY0 + timedelta(minutes=minute), page=f"/p{minute}")
    page.get(f"{server}/events")
    assert row_users(page) == ["1", "2", "1", "2", "1"]
    page.execute_script("window.__marker = 1")

    field = page.find_element(By.ID, "f-user_id")
    field.send_keys("2")
    wait(page, lambda b: b.current_url.endswith("/events?user_id=2"), "the URL follows the filter")
    wait(page, lambda b: row_users(b) == ["2", "2"], "only user 2's events are listed")
    field.send_keys(Keys.BACKSPACE, "1")
    wait(page, lambda b: b.current_url.endswith("/events?user_id=1"), "the URL follows the new filter")
    wait(page, lambda b: row_users(b) == ["1", "1", "1"], "only user 1's events are listed")
    assert page.execute_script("return window.__marker") == 1, "the page was never reloaded"

    page.back()
    wait(page, lambda b: b.current_url.endswith("/events?user_id=2"), "Back returns to the previous filter")
    wait(page, lambda b: row_users(b) == ["2", "2"], "…with its results")
    assert page.find_element(By.ID, "f-user_id").get_attribute("value") == "2"
    page.back()
    wait(page, lambda b: b.current_url.endswith("/events"), "Back again returns to the unfiltered list")
    wait(page, lambda b: len(row_users(b)) == 5, "…with every event")
    assert page.find_element(By.ID, "f-user_id").get_attribute("value") == ""
    assert page.execute_script("return window.__marker") == 1, "Back restored the view in place"


def test_an_invalid_filter_shows_its_message_and_a_fix_brings_results_back(page, server, client):
    store(client, 4, DAY0)
    page.get(f"{server}/events")
    field = page.find_element(By.ID, "f-user_id")
    field.send_keys("-4")
    wait(page, lambda b: b.find_element(By.ID, "user_id-error").text == "must be a positive integer",
         "the message appears by the field")
    wait(page, lambda b: field.get_attribute("aria-invalid") == "true", "the field is marked invalid")
    assert "Fix the filter marked above" in page.find_element(By.ID, "event-results").text
    field.send_keys(Keys.HOME, Keys.DELETE)
    wait(page, lambda b: row_users(b) == ["4"], "a valid filter lists events again")
    wait(page, lambda b: field.get_attribute("aria-invalid") is None, "the field is no longer marked invalid")
    assert page.find_element(By.ID, "user_id-error").text == ""


def test_load_more_appends_the_next_page(page, server, client):
    for minute in range(60):
        store(client, 6, DAY0 + timedelta(minutes=minute))
    page.get(f"{server}/events?user_id=6")
    page.execute_script("window.__marker = 1")
    assert len(row_users(page)) == 50
    page.find_element(By.ID, "load-more-link").click()
    wait(page, lambda b: len(row_users(b)) == 60, "ten more rows are appended")
    wait(page, lambda b: "every matching event" in b.find_element(By.ID, "load-more").text, "no more to load")
    assert page.execute_script("return window.__marker") == 1
    assert page.current_url.endswith("/events?user_id=6")


def test_live_toggle_brings_new_events_to_the_top(page, server, client):
    page.get(f"{server}/events?user_id=55")
    assert "No events match these filters." in page.find_element(By.ID, "event-rows").text
    page.find_element(By.ID, "f-live").click()
    wait(page, lambda b: b.current_url.endswith("/events?user_id=55&live=1"), "the URL keeps the toggle")
    wait(page, lambda b: "Live" in b.find_element(By.ID, "live-poller").text, "the page says it is live")
    store(client, 55, datetime.now(UTC) - timedelta(seconds=2), action="first_live")
    wait(page, lambda b: "first_live" in b.find_element(By.ID, "event-rows").text, "a new event appears")
    assert not page.find_elements(By.ID, "events-empty"), "the empty state has gone"
    store(client, 55, datetime.now(UTC), action="second_live")
    wait(page, lambda b: "second_live" in b.find_element(By.ID, "event-rows").text, "another one appears")
    actions = [cell.text for cell in page.find_elements(By.CSS_SELECTOR, "#event-rows .col-action")]
    assert actions == ["second_live", "first_live"], "newest on top"


def windows_table_events(browser: Any) -> list[str]:
    return [cell.text for cell in browser.find_elements(
        By.CSS_SELECTOR, ".windows-table td[data-label='Events']")]


def test_recalculate_runs_the_job_and_the_numbers_appear(page, server, client, worker):
    store(client, 321, DAY0 + timedelta(hours=1))
    store(client, 321, DAY0 + timedelta(hours=2), action="click")
    store(client, 322, DAY0 + timedelta(hours=3), action="click")
    page.get(f"{server}/metrics?from=2025-10-20T00:00&till=2025-10-21T00:00")
    assert windows_table_events(page) == []
    assert "No metrics in these windows." in page.find_element(By.ID, "metric-results").text
    page.execute_script("window.__marker = 1")

    page.find_element(By.XPATH, "//button[normalize-space()='Recalculate now']").click()
    wait(page, lambda b: b.find_elements(By.CSS_SELECTOR, "#job-status .job-finished"), "the job finishes")
    wait(page, lambda b: windows_table_events(b) == ["3"], "the table shows the new numbers")
    assert "counted 3 events of 2 users" in page.find_element(By.ID, "job-status").text
    chart_bar = page.find_element(By.CSS_SELECTOR, ".chart-wide [aria-label^='Oct 20 00:00–04:00 UTC']")
    assert chart_bar.get_attribute("aria-label") == "Oct 20 00:00–04:00 UTC: 3 events from 2 users"
    assert "manual" in page.find_element(By.CSS_SELECTOR, ".runs-table").text
    assert page.execute_script("return window.__marker") == 1, "all without a reload"


def seed_a_busy_week(client: Any, runner: Any) -> None:
    """A few hundred events over the past week (the same every run), for screenshots: metrics computed but for
    the last day, whose closed windows no run has counted yet (as when the schedule has been down a while)."""
    rng = random.Random(2025)
    now = datetime.now(UTC)
    actions = ("page_view", "click", "search", "signup", "purchase")
    pages = ("/home", "/pricing", "/docs/getting-started", "/blog/htmx-dashboards", "/account/settings")
    for _ in range(300):
        metadata: dict[str, Any] = {"page": rng.choice(pages)}
        if rng.random() < 0.25:
            metadata["referrer"] = "https://news.example.com/articles/2025/10/activity-tracking?utm_source=feed"
        if rng.random() < 0.1:
            metadata["cart"] = {"items": rng.randint(1, 5), "total": 19.99}
        hour_weight = rng.choice((1, 1, 2, 3))  # busier at some hours, so the chart has a shape
        store(client, rng.choice((42, 321, 1001, 7, 88)),
              now - timedelta(minutes=rng.randint(3, 7 * 24 * 60 // hour_weight)),
              rng.choices(actions, (10, 6, 3, 1, 1))[0], **metadata)
    counted = ("--from", (now - timedelta(days=8)).isoformat(), "--till", (now - timedelta(days=1)).isoformat())
    assert runner.invoke(args=["calculate-metrics", *counted]).exit_code == 0


def test_screenshots_at_phone_and_desktop_width(page, server, client, runner):
    """Writes screenshots/{events,metrics}-{1280,375}.png; at both widths nothing may overflow sideways,
    and the chart marks the windows not counted yet a few pixels high, not as bars."""
    seed_a_busy_week(client, runner)
    SCREENSHOTS.mkdir(exist_ok=True)
    try:
        for width in (1280, 375):
            for name in ("events", "metrics"):
                viewport(page, width, 900)
                page.get(f"{server}/{name}")
                assert page.execute_script("return document.documentElement.scrollWidth") <= width, \
                    f"/{name} overflows sideways at {width} px"
                if name == "metrics":
                    heights = uncounted_mark_heights(page)
                    assert heights and all(0 < height <= 10 for height in heights), (width, heights)
                viewport(page, width, page.execute_script("return document.documentElement.scrollHeight"))
                path = SCREENSHOTS / f"{name}-{width}.png"
                assert page.save_screenshot(str(path)), path
    finally:
        page.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def uncounted_mark_heights(browser: Any) -> list[float]:
    """The drawn height, in CSS pixels, of each mark of a window not counted yet, on the chart shown."""
    return [mark.rect["height"] for mark in browser.find_elements(By.CSS_SELECTOR, ".chart-svg rect.bar-uncounted")
            if mark.is_displayed()]


def viewport(browser: Any, width: int, height: int) -> None:
    """Emulate a screen of exactly this many CSS pixels (a phone below 500 px)."""
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500})


# What the original's React page does: on another origin, `fetch` the API and show the events,
# reading the original's field names. Here it also records one event first, with a JSON content
# type (so the browser sends a preflight), and shows the request id it may read (exposed header).
ORIGINAL_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>User events</title></head>
<body>
<p id="status">loading</p>
<table><thead><tr><th>UUID</th><th>User ID</th><th>Action</th><th>Metadata</th><th>Occured At</th></tr></thead>
<tbody id="rows"></tbody></table>
<script>
const API = "%(api)s";
async function main() {
  const created = await fetch(API + "/api/event", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({user_id: 321, action: "from_the_page", metadata: {page: "/react"}})});
  if (created.status !== 201) throw new Error("create answered " + created.status);
  const response = await fetch(API + "/api/events?user_id=321");
  const data = await response.json();
  for (const event of data.events) {
    const row = document.createElement("tr");
    for (const value of [event.uuid, event.user_id, event.action, JSON.stringify(event.metadata), event.occured_at]) {
      const cell = document.createElement("td");
      cell.textContent = value === undefined ? "" : String(value);
      row.appendChild(cell);
    }
    document.getElementById("rows").appendChild(row);
  }
  document.getElementById("status").textContent = "request " + response.headers.get("X-Request-ID");
}
main().catch((error) => { document.getElementById("status").textContent = "failed: " + error; });
</script>
</body></html>
"""


def test_the_original_page_on_another_origin_lists_events_with_its_field_names(page, server, client, other_origin):
    origin, root = other_origin
    store(client, 321, DAY0, action="test_action", page="/hello/world")
    store(client, 5, DAY0)
    (root / "index.html").write_text(ORIGINAL_PAGE % {"api": server})
    page.get(f"{origin}/index.html")
    status = wait(page, lambda b: b.find_element(By.ID, "status").text != "loading" and
                  b.find_element(By.ID, "status").text, "the page has its answer")
    assert status.startswith("request ") and len(status) > len("request "), status
    rows = [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in page.find_elements(By.CSS_SELECTOR, "#rows tr")]
    listed = client.get("/api/events?user_id=321").get_json()["events"]
    assert rows == [[e["id"], "321", e["action"], json_text(e["metadata"]), e["occurred_at"]] for e in listed]
    assert [row[2] for row in rows] == ["test_action", "from_the_page"]
    assert all(row[0] and row[4] for row in rows), "every UUID and Occured At cell is filled"


def json_text(value: Any) -> str:
    """`JSON.stringify` of a flat object, as the page writes it."""
    return json.dumps(value, separators=(",", ":"))


def open_window_lines(browser: Any) -> list[str]:
    """The counts of each window in progress holding events (the one just ended is open too, and empty,
    in the settle time after a boundary)."""
    lines = [element.text for element in browser.find_elements(By.CSS_SELECTOR, ".open-window-counts")]
    return [line for line in lines if not line.startswith("0 events")]


def test_the_window_in_progress_shows_live_and_a_run_that_counted_nothing_is_not_never(page, server, client, worker):
    now = datetime.now(UTC).replace(microsecond=0)
    store(client, 77, now)
    store(client, 77, now, action="click")
    store(client, 78, now, action="click")
    page.get(f"{server}/metrics")
    assert open_window_lines(page) == ["3 events from 2 users so far."]
    assert page.find_elements(By.CSS_SELECTOR, ".chart-wide rect.bar-open")
    assert page.find_element(By.ID, "last-run").text == "never"
    assert "the one in progress shows above" in page.find_element(By.CSS_SELECTOR, "p.empty").text
    page.execute_script("window.__marker = 1")

    store(client, 79, now)
    wait(page, lambda b: open_window_lines(b) == ["4 events from 3 users so far."], "the live polling counts anew")
    labels = [bar.get_attribute("aria-label") for bar in page.find_elements(By.CSS_SELECTOR, ".chart-wide .chart-bars g")]
    assert [label for label in labels if label.endswith(": in progress, 4 events from 3 users so far (not final)")]

    page.find_element(By.XPATH, "//button[normalize-space()='Recalculate now']").click()
    wait(page, lambda b: b.find_elements(By.CSS_SELECTOR, "#job-status .job-finished"), "the job finishes")
    assert "counted 0 events of 0 users in 0 windows" in page.find_element(By.ID, "job-status").text
    wait(page, lambda b: "nothing closed to count" in b.find_element(By.ID, "last-run").text,
         "Last computed tells the run that counted nothing")
    assert "never" not in page.find_element(By.ID, "last-run").text
    assert open_window_lines(page) == ["4 events from 3 users so far."], "still counted live, not final"
    assert page.execute_script("return window.__marker") == 1, "all without a reload"


def test_the_recalculate_widget_shows_how_far_a_long_catch_up_is(page, server, client, worker, app_config):
    with catch_up_held_at(client.application, 9, DAY0 - 1000 * timedelta(hours=4), windows=1000,
                          held=700) as held:
        page.get(f"{server}/metrics?user_id=9")
        page.find_element(By.XPATH, "//button[normalize-space()='Recalculate now']").click()
        bar = wait(page, lambda b: [p for p in b.find_elements(By.CSS_SELECTOR, "#job-status progress")
                                    if p.get_attribute("value") == "700"], "the widget shows the run waiting at 700")[0]
        assert bar.get_attribute("max") == "1000"
        text = page.find_element(By.CSS_SELECTOR, "#job-status .job-progress p").text
        assert text == f"700 of 1,000 windows counted (70%); counting {window_text(held, held + timedelta(hours=4))}"
        job = client.post("/api/metrics").get_json()["job"]  # the same job, while it runs
        assert job["status"] == "started" and job["progress"]["done"] == 700
    wait(page, lambda b: b.find_elements(By.CSS_SELECTOR, "#job-status .job-finished"), "the job finishes")
    assert not page.find_elements(By.CSS_SELECTOR, "#job-status progress")
    assert "counted 1,000 events of 1 users in 1,000 windows" in page.find_element(By.ID, "job-status").text


@pytest.mark.seconds
def test_a_polling_page_of_one_test_logs_nothing_into_the_next_after_its_server_stopped(browser, app):
    with serving(app) as first, page_for_a_test(browser) as page:
        page.get(f"{first}/metrics")
        assert page.find_elements(By.CSS_SELECTOR, f"[hx-trigger='every {LIVE_INTERVAL_SECONDS}s']"), \
            "the metrics page polls its window in progress"
    # `first` has stopped, as the `server` of a test stops after it.
    assert browser.current_url == "about:blank", "the first test's page was left behind, polling"
    with serving(app) as second, page_for_a_test(browser) as page:
        time.sleep(LIVE_INTERVAL_SECONDS + 1)  # a worker starting, events being seeded: a poll would fail now
        page.get(f"{second}/events")
