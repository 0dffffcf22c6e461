"""Paths the rest of the suite never reaches, reached on purpose.

Elsewhere every event is stored with the real clock for a window long
closed, so every window is late and marked stale, and the calculation's
branch for windows never computed is never the one that finds them. Here an
injectable clock (the `clock` fixture) stores events while their window is
still open and then moves on, as production does. And the Recalculate button
is pressed again after its first job has ended.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from app.core.times import format_rfc3339
from app.extensions import db, redis_client, settings
from app.jobs.queue import calculation_queue
from tests.helpers import csrf_token_of, post_event
from tests.test_web_metrics import job_poll_url, poll_until_done, window_rows

UTC = timezone.utc
FOUR = timedelta(hours=4)
W0 = datetime(2025, 10, 23, 12, tzinfo=UTC)  # the window [12:00, 16:00) that holds the clock's start, 13:07
HTMX = {"HX-Request": "true"}


def store(client, user_id: int, when: datetime, action: str = "page_view") -> None:
    response = post_event(client, user_id=user_id, action=action, occurred_at=format_rfc3339(when))
    assert response.status_code == 201, response.get_json()


def ledger(app) -> list[tuple[datetime, bool, bool]]:
    """The calculation's ledger: (window start, computed, stale) of every row."""
    with app.app_context():
        rows = db.session.execute(sa.text(
            "SELECT window_start, computed_at IS NOT NULL, stale FROM metrics_windows ORDER BY 1")).all()
        db.session.rollback()
    return [tuple(row) for row in rows]


def calculate(runner) -> dict:
    result = runner.invoke(args=["calculate-metrics"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def bar_of_w0(client) -> str:
    """What the chart says of the window W0, as its tooltip and screen readers tell it."""
    html = client.get("/metrics?from=2025-10-23T12:00&till=2025-10-23T16:00", headers=HTMX).get_data(as_text=True)
    return re.search(r"<title>Oct 23 12:00–16:00 UTC: ([^<]+)</title>", html).group(1)


def metrics(client) -> dict[tuple[int, str], int]:
    body = client.get("/api/metrics").get_json()
    return {(m["user_id"], m["window_start_at"]): m["event_count"] for m in body["metrics"]}


def test_windows_never_computed_are_found_once_closed_without_any_stale_mark(app, client, runner, clock):
    store(client, 1, clock.now - timedelta(minutes=30))
    store(client, 2, clock.now)
    assert ledger(app) == [], "events for the open window mark nothing"
    assert calculate(runner)["windows"] == 0, "an open window is not computed"

    clock.now = W0 + 2 * FOUR + timedelta(hours=1)  # two windows later; [16:00, 20:00) stays empty
    store(client, 1, clock.now)
    assert ledger(app) == []
    clock.now = W0 + 3 * FOUR + timedelta(seconds=10)  # [20:00, 00:00) has ended but not settled yet
    summary = calculate(runner)
    assert (summary["windows"], summary["events"]) == (1, 2)
    assert metrics(client) == {(1, format_rfc3339(W0)): 1, (2, format_rfc3339(W0)): 1}

    clock.advance(timedelta(seconds=21))  # 30 s after its end: settled
    summary = calculate(runner)
    assert (summary["windows"], summary["from"], summary["till"]) == (
        1, format_rfc3339(W0 + 2 * FOUR), format_rfc3339(W0 + 3 * FOUR))
    assert metrics(client) == {(1, format_rfc3339(W0)): 1, (2, format_rfc3339(W0)): 1,
                               (1, format_rfc3339(W0 + 2 * FOUR)): 1}
    assert calculate(runner)["windows"] == 0
    assert all(computed and not stale for _, computed, stale in ledger(app))


def test_the_dashboard_tells_an_open_window_from_a_pending_one_by_the_clock(client, runner, clock):
    store(client, 7, clock.now)
    assert bar_of_w0(client) == "still open, counted once it closes"
    clock.now = W0 + FOUR + timedelta(minutes=1)
    assert bar_of_w0(client) == "not counted yet"
    assert calculate(runner)["windows"] == 1
    assert bar_of_w0(client) == "1 events from 1 users"


def test_pressing_recalculate_after_the_job_ended_queues_a_new_job(app, client, worker):
    token = csrf_token_of(client)
    first = client.post("/metrics/recalculate", headers={**HTMX, "X-CSRF-Token": token}).get_data(as_text=True)
    first_url = job_poll_url(first)
    _, seen, _ = poll_until_done(client, first_url)
    assert seen[-1] == "finished", seen
    again = client.post("/metrics/recalculate", headers={**HTMX, "X-CSRF-Token": token})
    assert again.status_code == 200
    second_url = job_poll_url(again.get_data(as_text=True))
    assert second_url is not None, "a new job is followed, not the finished one"
    assert second_url != first_url
    _, seen, _ = poll_until_done(client, second_url)
    assert seen[-1] == "finished", seen
    with app.app_context():
        assert len(calculation_queue(redis_client(), settings().redis_namespace)) == 0
        runs = db.session.execute(sa.text("SELECT count(*) FROM calculation_runs WHERE status = 'finished'")).scalar_one()
    assert runs == 2
