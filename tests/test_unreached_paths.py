"""Paths the rest of the suite never reaches, reached on purpose.

Elsewhere every event is stored with the real clock for a window long
closed, so every window is late and marked stale, and the calculation's
branch for windows never computed is never the one that finds them. Here an
injectable clock (the `clock` fixture) stores events while their window is
still open and then moves on, as production does. And the Recalculate button
is pressed again after its first job has ended, and a run fails half-way.
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from app.core.times import format_rfc3339
from app.extensions import db, runtime, settings
from app.jobs.queue import calculation_queue
from tests.helpers import csrf_token_of, post_event, separate_app
from tests.test_web_metrics import job_poll_url, poll_until_done

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

    clock.advance(timedelta(seconds=21))  # 31 s after its end: past the 30 s settle time
    summary = calculate(runner)
    assert (summary["windows"], summary["from"], summary["till"]) == (
        1, format_rfc3339(W0 + 2 * FOUR), format_rfc3339(W0 + 3 * FOUR))
    assert metrics(client) == {(1, format_rfc3339(W0)): 1, (2, format_rfc3339(W0)): 1,
                               (1, format_rfc3339(W0 + 2 * FOUR)): 1}
    assert calculate(runner)["windows"] == 0
    assert all(computed and not stale for _, computed, stale in ledger(app))


def test_the_dashboard_tells_an_open_window_from_a_pending_one_by_the_clock(client, runner, clock):
    store(client, 7, clock.now)
    assert bar_of_w0(client) == "in progress, 1 events from 1 users so far (not final)"
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
        assert len(calculation_queue(runtime().background_redis, settings().redis_namespace)) == 0
        runs = db.session.execute(sa.text("SELECT count(*) FROM calculation_runs WHERE status = 'finished'")).scalar_one()
    assert runs == 2


def history(client) -> list[tuple[str, str, str, str, str]]:
    """The dashboard's run history, newest first: (trigger, windows, users, events, outcome)."""
    html = client.get("/metrics").get_data(as_text=True)
    return [(trigger, re.sub(r"<[^>]+>", "", windows).strip(), users, events, re.sub(r"<[^>]+>", " ", outcome).strip())
            for trigger, windows, users, events, outcome in re.findall(
                r'data-label="Trigger">([^<]*)</td>\s*<td data-label="Windows">(.*?)</td>\s*'
                r'<td class="col-num" data-label="Users">([^<]*)</td>\s*<td class="col-num" data-label="Events">([^<]*)</td>'
                r'.*?data-label="Outcome">(.*?)</td>', html, re.S)]


@pytest.fixture
def impatient(app, app_config):
    """The same database through an app whose connections give up on a lock after a tenth of a second."""
    options = {"pool_size": 2, "connect_args": {"options": "-c timezone=UTC -c lock_timeout=100"}}
    with separate_app({**app_config, "SQLALCHEMY_ENGINE_OPTIONS": options}) as impatient_app:
        yield impatient_app


def test_a_failed_run_is_recorded_with_its_error_and_the_next_run_completes_its_windows(app, client, impatient):
    store(client, 1, datetime(2025, 10, 20, 1, tzinfo=UTC))
    with app.app_context():
        engine = db.engine  # outside the app context below, so the command runs in the impatient app's
    with engine.connect() as blocker:
        blocker.execute(sa.text("LOCK TABLE user_activity_metrics IN ACCESS EXCLUSIVE MODE"))
        failed = impatient.test_cli_runner().invoke(args=["calculate-metrics"])
        blocker.rollback()
    assert failed.exit_code != 0
    [(trigger, windows, users, events, outcome)] = history(client)
    assert (trigger, windows, users, events, outcome.split()[:2]) == ("cli", "none", "0", "0", ["failed", "OperationalError:"])
    assert "canceling statement due to lock timeout" in outcome
    assert metrics(client) == {}
    assert calculate(impatient.test_cli_runner())["windows"] == 1
    assert [run[4].split()[0] for run in history(client)] == ["finished", "failed"], "the failed run stays failed"
    assert metrics(client) == {(1, "2025-10-20T00:00:00.000000Z"): 1}


def test_a_range_holding_only_the_open_window_computes_nothing(client, runner, clock):
    store(client, 1, clock.now)
    result = runner.invoke(args=["calculate-metrics", "--from", format_rfc3339(W0), "--till", format_rfc3339(clock.now)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["windows"], summary["users"], summary["events"], summary["from"]) == (0, 0, 0, None)
    assert metrics(client) == {}


def test_the_summary_adds_up_every_window_of_the_run(app, client, runner):
    for hour in (1, 5, 9):
        store(client, 1, datetime(2025, 10, 20, hour, tzinfo=UTC))
        store(client, 2, datetime(2025, 10, 20, hour, 30, tzinfo=UTC))
    first = calculate(runner)
    assert (first["windows"], first["users"], first["events"], first["rows_written"], first["rows_removed"]) == (3, 2, 6, 6, 0)
    with app.app_context():
        db.session.execute(sa.text("DELETE FROM events WHERE user_id = 2"))
        db.session.commit()
        run_ids = db.session.execute(sa.text("SELECT id FROM calculation_runs ORDER BY id")).scalars().all()
    assert first["run_id"] == run_ids[-1]
    again = runner.invoke(args=["calculate-metrics", "--from", "2025-10-20T00:00:00Z", "--till", "2025-10-20T12:00:00Z"])
    summary = json.loads(again.output)
    assert (summary["windows"], summary["users"], summary["rows_written"], summary["rows_removed"]) == (3, 1, 0, 3)
    assert metrics(client) == {(1, f"2025-10-20T{hour:02d}:00:00.000000Z"): 1 for hour in (0, 4, 8)}
    assert calculate(runner)["users"] == 0
