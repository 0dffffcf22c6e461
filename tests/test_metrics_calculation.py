"""The metrics calculation against real PostgreSQL, with time passed in, not waited for."""
from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from app.core.validation import InputBounds, parse_event
from app.core.windows import floor_window
from app.extensions import database, db
from app.services.calculation import LOCK_NAME, CalculationProgress, CalculationSettings, calculate_metrics
from app.services.events import record_events
from tests.helpers import ROOT, wait_until

UTC = timezone.utc
FOUR = timedelta(hours=4)
SETTINGS = CalculationSettings(window_size=FOUR, settle=timedelta(seconds=30), chunk_windows=4)
# Events at fixed dates, whatever today is; an event from year 216 is stored too (the age bound is
# tested in test_request_bounds.py): the calculation must cope with what older rules let in.
ANY_AGE = InputBounds(max_age=timedelta.max)
DAY0 = datetime(2025, 10, 20, tzinfo=UTC)


def store(app, user_id: int, when: datetime, action: str = "page_view", now: datetime | None = None) -> None:
    now = now or datetime.now(UTC)
    with app.app_context():
        new = parse_event(json.dumps({"user_id": user_id, "action": action, "occurred_at": when.isoformat()}).encode(),
                          now=now, bounds=ANY_AGE)
        record_events(database(), [new], now=now, window_size=FOUR)


def stored_metrics(app) -> dict[tuple[int, datetime], tuple[int, dict[str, int], datetime]]:
    with app.app_context():
        rows = db.session.execute(sa.text(
            "SELECT user_id, window_start, window_end, event_count, actions, computed_at FROM user_activity_metrics"
        )).all()
    for row in rows:
        assert row.window_end - row.window_start == FOUR
    return {(r.user_id, r.window_start): (r.event_count, r.actions, r.computed_at) for r in rows}


def expected_metrics(events: list[tuple[int, datetime, str]]) -> dict[tuple[int, datetime], tuple[int, dict]]:
    """An independent count in Python of what the metrics must say."""
    actions: dict[tuple[int, datetime], Counter] = defaultdict(Counter)
    for user_id, when, action in events:
        actions[(user_id, floor_window(when, FOUR))][action] += 1
    return {key: (sum(c.values()), dict(c)) for key, c in actions.items()}


def counts_only(metrics: dict) -> dict:
    return {key: value[:2] for key, value in metrics.items()}


def calculate(app, now: datetime, **kwargs):
    with app.app_context():
        return calculate_metrics(database(), SETTINGS, now=now, **kwargs)


def test_boundary_events_are_counted_once_in_the_right_window(app):
    store(app, 1, DAY0 + FOUR - timedelta(microseconds=1))
    store(app, 1, DAY0 + FOUR)
    calculate(app, now=DAY0 + 3 * FOUR)
    metrics = counts_only(stored_metrics(app))
    assert metrics == {
        (1, DAY0): (1, {"page_view": 1}),
        (1, DAY0 + FOUR): (1, {"page_view": 1}),
    }


def test_boundaries_hold_when_the_process_and_database_use_other_time_zones(app, monkeypatch, database_url):
    monkeypatch.setenv("TZ", "Asia/Kathmandu")
    time.tzset()
    try:
        with app.app_context():
            with db.engine.begin() as conn:
                name = conn.execute(sa.text("SELECT current_database()")).scalar_one()
                conn.execute(sa.text(f"ALTER DATABASE \"{name}\" SET timezone = 'America/St_Johns'"))
            db.engine.dispose()
        store(app, 1, datetime(2025, 10, 20, 9, 44, 59, 999999, tzinfo=timezone(timedelta(hours=5, minutes=45))))
        store(app, 1, datetime(2025, 10, 20, 4, tzinfo=UTC))
        calculate(app, now=DAY0 + 3 * FOUR)
        assert counts_only(stored_metrics(app)) == {
            (1, DAY0): (1, {"page_view": 1}),
            (1, DAY0 + FOUR): (1, {"page_view": 1}),
        }
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
        with app.app_context():
            with db.engine.begin() as conn:
                conn.execute(sa.text(f"ALTER DATABASE \"{name}\" RESET timezone"))


def test_catch_up_after_three_days_fills_every_window_and_a_second_run_changes_nothing(app):
    events = []
    for hour in range(0, 72, 3):
        for user_id in (1, 2):
            when = DAY0 + timedelta(hours=hour, minutes=user_id)
            action = "click" if hour % 2 else "page_view"
            store(app, user_id, when, action)
            events.append((user_id, when, action))
    now = DAY0 + timedelta(days=3, minutes=1)
    summary = calculate(app, now=now)
    assert summary.windows == 18
    assert summary.events == len(events)
    assert summary.users == 2
    first = stored_metrics(app)
    assert counts_only(first) == expected_metrics(events)
    with app.app_context():
        ledger = db.session.execute(sa.text(
            "SELECT count(*) FROM metrics_windows WHERE computed_at IS NOT NULL AND NOT stale")).scalar_one()
    assert ledger == 18

    again = calculate(app, now=now)
    assert again.windows == 0
    assert stored_metrics(app) == first


def test_sparse_history_costs_one_window_per_window_with_events(app):
    """An event from long ago (a client's wrong clock, say) does not make a run walk every window since."""
    ancient = datetime(216, 6, 29, 20, 15, tzinfo=UTC)
    store(app, 1, ancient)
    store(app, 1, DAY0 + timedelta(hours=1))
    store(app, 2, DAY0 + timedelta(days=2, hours=1))
    summary = calculate(app, now=DAY0 + timedelta(days=3))
    assert summary.windows == 3
    assert counts_only(stored_metrics(app)) == {
        (1, floor_window(ancient, FOUR)): (1, {"page_view": 1}),
        (1, DAY0): (1, {"page_view": 1}),
        (2, DAY0 + timedelta(days=2)): (1, {"page_view": 1}),
    }
    assert calculate(app, now=DAY0 + timedelta(days=3)).windows == 0


def test_an_open_window_is_not_computed_until_it_closes_and_settles(app):
    store(app, 1, DAY0 + timedelta(hours=1))
    assert calculate(app, now=DAY0 + FOUR + timedelta(seconds=10)).windows == 0
    assert stored_metrics(app) == {}
    assert calculate(app, now=DAY0 + FOUR + timedelta(seconds=31)).windows == 1
    assert counts_only(stored_metrics(app)) == {(1, DAY0): (1, {"page_view": 1})}


def test_late_event_marks_its_window_stale_and_the_next_run_recounts_it(app):
    store(app, 1, DAY0 + timedelta(hours=1))
    now = DAY0 + timedelta(days=1)
    calculate(app, now=now)
    store(app, 1, DAY0 + timedelta(hours=2), action="click", now=now)
    store(app, 2, DAY0 + timedelta(hours=3), now=now)
    with app.app_context():
        stale = db.session.execute(sa.text("SELECT window_start FROM metrics_windows WHERE stale")).scalars().all()
    assert stale == [DAY0]
    summary = calculate(app, now=now)
    assert summary.windows == 1
    assert counts_only(stored_metrics(app)) == {
        (1, DAY0): (2, {"page_view": 1, "click": 1}),
        (2, DAY0): (1, {"page_view": 1}),
    }


def test_late_event_into_a_never_computed_old_window_is_computed(app):
    store(app, 1, DAY0 + timedelta(days=1))
    now = DAY0 + timedelta(days=2)
    calculate(app, now=now)
    store(app, 3, DAY0 - timedelta(days=10), now=now)
    calculate(app, now=now)
    assert stored_metrics(app)[(3, DAY0 - timedelta(days=10))][0] == 1


def test_recompute_drops_users_without_events_left_in_the_window(app):
    store(app, 1, DAY0 + timedelta(hours=1))
    store(app, 2, DAY0 + timedelta(hours=2))
    now = DAY0 + timedelta(days=1)
    calculate(app, now=now)
    assert set(stored_metrics(app)) == {(1, DAY0), (2, DAY0)}
    with app.app_context():
        db.session.execute(sa.text("DELETE FROM events WHERE user_id = 2"))
        db.session.commit()
    summary = calculate(app, now=now, start=DAY0, end=DAY0 + FOUR)
    assert summary.windows == 1
    assert summary.rows_removed == 1
    assert set(stored_metrics(app)) == {(1, DAY0)}


def test_explicit_range_is_widened_to_whole_windows_and_limited_to_closed_ones(app):
    store(app, 1, DAY0 + timedelta(hours=1))
    summary = calculate(app, now=DAY0 + timedelta(hours=9), start=DAY0 + timedelta(hours=3),
                        end=DAY0 + timedelta(days=5))
    assert (summary.first_window, summary.last_window_end) == (DAY0, DAY0 + 2 * FOUR)


def test_concurrent_runs_give_the_result_of_one(app):
    events = []
    for i in range(300):
        when = DAY0 + timedelta(minutes=17 * i)
        store(app, i % 7 + 1, when, f"a{i % 3}")
        events.append((i % 7 + 1, when, f"a{i % 3}"))
    now = DAY0 + timedelta(days=5)
    summaries = []
    errors = []

    def run() -> None:
        try:
            summaries.append(calculate(app, now=now))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(s.windows for s in summaries)[:2] == [0, 0]
    assert counts_only(stored_metrics(app)) == expected_metrics(events)


def test_runs_are_recorded_in_the_history(app):
    store(app, 1, DAY0 + timedelta(hours=1))
    calculate(app, now=DAY0 + timedelta(days=1, minutes=1), trigger="cli")
    with app.app_context():
        run = db.session.execute(sa.text("SELECT * FROM calculation_runs")).one()
    assert (run.trigger, run.status, run.windows, run.users, run.events) == ("cli", "finished", 1, 1, 1)
    assert run.first_window == DAY0 and run.last_window == DAY0 + FOUR


def test_cli_command_runs_the_same_calculation(app, runner):
    store(app, 5, datetime(2025, 1, 1, 1, tzinfo=UTC))
    result = runner.invoke(args=["calculate-metrics"])
    assert result.exit_code == 0, result.output
    assert '"users": 1' in result.output
    assert (5, datetime(2025, 1, 1, tzinfo=UTC)) in stored_metrics(app)
    result = runner.invoke(args=["calculate-metrics", "--from", "2025-01-01T00:00:00Z"])
    assert result.exit_code != 0
    assert "--till" in result.output


def test_progress_is_told_before_every_window_in_order(app):
    for hour in range(1, 72, 4):
        store(app, 1, DAY0 + timedelta(hours=hour))
    told: list[CalculationProgress] = []
    summary = calculate(app, now=DAY0 + timedelta(days=3, minutes=1), progress=told.append)
    assert summary.windows == 18
    assert [(p.done, p.total) for p in told] == [(i, 18) for i in range(18)]
    assert [p.window for p in told] == [DAY0 + i * FOUR for i in range(18)]
    nothing: list[CalculationProgress] = []
    assert calculate(app, now=DAY0 + timedelta(days=3, minutes=1), progress=nothing.append).windows == 0
    assert nothing == []


def test_a_failure_that_leaves_the_connection_busy_is_the_error_reported_and_recorded(app):
    """A job timeout can land while a statement is in flight and leave the connection busy with a
    result nobody reads. The run's own error must still be what the caller sees (not the driver's
    "another command is already in progress" from cleaning up), the run must be recorded as failed,
    and the next run must not be blocked by the locks of the session left behind."""
    for hour in (1, 5, 9):
        store(app, 1, DAY0 + timedelta(hours=hour))
    with app.app_context():
        engine = database().primary
    used: list[sa.Connection] = []

    def remember(conn, *args) -> None:
        used.append(conn)

    def interrupted(progress: CalculationProgress) -> None:
        # What an interruption mid-statement leaves behind: a query sent, its result never read.
        used[-1].connection.dbapi_connection.pgconn.send_query(b"SELECT pg_sleep(0.1)")
        raise RuntimeError("interrupted mid-statement")

    sa.event.listen(engine, "before_cursor_execute", remember)
    try:
        try:
            calculate(app, now=DAY0 + timedelta(days=1, minutes=1), progress=interrupted)
        except RuntimeError as exc:
            assert str(exc) == "interrupted mid-statement"
        else:
            raise AssertionError("the run's error was swallowed")
    finally:
        sa.event.remove(engine, "before_cursor_execute", remember)
    assert run_statuses(app) == ["failed"]
    with app.app_context():
        error = db.session.execute(sa.text("SELECT error FROM calculation_runs")).scalar_one()
    assert error == "RuntimeError: interrupted mid-statement"
    assert calculate(app, now=DAY0 + timedelta(days=1, minutes=1)).events == 3
    assert run_statuses(app) == ["failed", "finished"]


def run_on_a_terminal(command: list[str], env: dict[str, str]) -> str:
    """Run `command` with its stdout on a pseudo-terminal, as a person at a shell would; its output."""
    leader, follower = pty.openpty()
    with subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=follower,
                          stderr=subprocess.STDOUT) as process:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the process has gone and closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=120) == 0, b"".join(chunks).decode(errors="replace")
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_the_cli_draws_a_progress_bar_on_a_terminal_and_prints_only_the_summary_otherwise(app, app_config, runner):
    for day in range(10):
        for hour in range(1, 24, 4):
            store(app, 3, DAY0 + timedelta(days=day, hours=hour))
    env = {**os.environ, **{key: str(value) for key, value in app_config.items()}}
    shown = run_on_a_terminal([sys.executable, "-m", "flask", "--app", "wsgi", "calculate-metrics"], env)
    assert "Counting windows" in shown and "60/60" in shown, shown
    assert '"windows": 60' in shown
    for day in range(10, 12):
        store(app, 3, DAY0 + timedelta(days=day, hours=1))
    piped = runner.invoke(args=["calculate-metrics"])
    assert piped.exit_code == 0
    assert "Counting windows" not in piped.output
    assert json.loads(piped.output)["windows"] == 2


def test_a_backlog_does_not_keep_a_later_run_from_its_window(app):
    """A run working through a backlog of stale windows releases the lock between chunks: a run that
    starts later computes the window closed since, and finishes, while the first is still working.

    The test orders the runs with the chunk lock (both queue behind it) and later freezes the first
    run on one backlog window's ledger row, so what it checks does not depend on speed.
    """
    backlog = 20
    now = datetime.now(UTC)
    for i in range(backlog):
        store(app, 1 + i % 3, DAY0 + i * FOUR + timedelta(minutes=5), now=now)  # late: marks the window stale
    newest = DAY0 + (backlog + 1) * FOUR
    store(app, 9, newest + timedelta(minutes=5), now=now)
    one_by_one = CalculationSettings(window_size=FOUR, settle=timedelta(seconds=30), chunk_windows=1)
    results: dict[str, object] = {}

    def run(name: str, at: datetime) -> None:
        try:
            with app.app_context():
                results[name] = calculate_metrics(database(), one_by_one, now=at)
        except Exception as exc:  # surfaced below
            results[name] = exc

    first = threading.Thread(target=run, args=("first", DAY0 + (backlog + 1) * FOUR + timedelta(minutes=1)))
    later = threading.Thread(target=run, args=("later", newest + FOUR + timedelta(minutes=1)))
    with app.app_context():
        gate, frozen = db.engine.connect(), db.engine.connect()
    try:
        gate.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": LOCK_NAME})
        frozen.execute(sa.text("SELECT 1 FROM metrics_windows WHERE window_start = :w FOR UPDATE"),
                       {"w": DAY0 + 10 * FOUR})
        first.start()
        wait_until(lambda: waiting_for_advisory_locks(app) == 1, what="the first run queues")
        later.start()
        wait_until(lambda: waiting_for_advisory_locks(app) == 2, what="the later run queues behind it")
        gate.commit()
        wait_until(lambda: run_statuses(app) == ["running", "finished"], timeout=30,
                   what="the later run finishes while the first is still busy")
        first_run = run_rows(app)[0]
        assert first_run.error is None, "a live run must never be recorded as abandoned"
    finally:
        gate.close()
        frozen.close()
        first.join()
        later.join()
    assert not any(isinstance(result, Exception) for result in results.values()), results
    runs = run_rows(app)
    assert [run.status for run in runs] == ["finished", "finished"]
    assert runs[0].started_at < runs[1].started_at < runs[1].finished_at < runs[0].finished_at
    assert (runs[0].windows, runs[1].windows) == (backlog, 1), "each window computed once, by one run"
    assert runs[1].first_window == newest
    assert len(counts_only(stored_metrics(app))) == backlog + 1


def waiting_for_advisory_locks(app) -> int:
    with app.app_context():
        count = db.session.execute(sa.text("""
            SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
              AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
        """)).scalar_one()
        db.session.rollback()
    return count


def run_rows(app) -> list:
    with app.app_context():
        rows = db.session.execute(sa.text("SELECT * FROM calculation_runs ORDER BY id")).all()
        db.session.rollback()
    return rows


def run_statuses(app) -> list[str]:
    return [run.status for run in run_rows(app)]


def test_an_explicit_range_longer_than_a_chunk_recomputes_every_window_once(app):
    events = [(1, DAY0 + timedelta(hours=1 + 4 * i), "page_view") for i in range(6)]
    for user_id, when, action in events:
        store(app, user_id, when, action)
    summary = calculate(app, now=DAY0 + timedelta(days=2), start=DAY0, end=DAY0 + 6 * FOUR)
    assert (summary.windows, summary.first_window, summary.last_window_end) == (6, DAY0, DAY0 + 6 * FOUR)
    assert counts_only(stored_metrics(app)) == expected_metrics(events)


def test_windows_made_stale_during_a_run_are_counted_by_that_run(app):
    """Late events that land while a catch-up runs (into a window it has done, and into an empty old one)
    are counted before it ends, every other pending window too, and its progress never shows more done than total."""
    events = [(1, DAY0 + timedelta(hours=1 + 4 * i), "page_view") for i in range(6)]
    for user_id, when, action in events:
        store(app, user_id, when, action)
    now = DAY0 + timedelta(days=2)
    late = [(2, DAY0 + timedelta(hours=2), "click"), (3, DAY0 - timedelta(days=5), "click")]
    told: list[CalculationProgress] = []

    def land_late_events(progress: CalculationProgress) -> None:
        told.append(progress)
        if progress.window == DAY0 + 2 * FOUR and len(told) == 3:
            for user_id, when, action in late:
                store(app, user_id, when, action, now=now)

    with app.app_context():  # two windows a chunk: the late ones land while the second chunk runs
        summary = calculate_metrics(database(), CalculationSettings(window_size=FOUR, chunk_windows=2), now=now,
                                    progress=land_late_events)
    assert summary.windows == 7
    assert counts_only(stored_metrics(app)) == expected_metrics(events + late)
    assert all(p.done < p.total for p in told), [(p.done, p.total) for p in told]
    assert calculate(app, now=now).windows == 0


RETAINED = CalculationSettings(window_size=FOUR, settle=timedelta(seconds=30), chunk_windows=4,
                               metrics_retention_days=1)


def test_windows_older_than_metrics_retention_are_left_alone_and_the_oldest_kept_is_computed(app):
    """METRICS_RETENTION_DAYS=1 at DAY0 + 3 days: the oldest window still kept starts at DAY0 + 2 days."""
    now = DAY0 + timedelta(days=3, minutes=1)
    kept = [(1, DAY0 + timedelta(days=2, hours=1), "page_view"), (1, DAY0 + timedelta(days=2, hours=5), "page_view")]
    for user_id, when, action in kept:
        store(app, user_id, when, action, now=when)  # on time: no window is marked stale
    store(app, 2, DAY0 + timedelta(days=1, hours=1), now=now)  # late, into a window retention no longer keeps
    with app.app_context():
        summary = calculate_metrics(database(), RETAINED, now=now)
    assert (summary.windows, summary.first_window) == (2, DAY0 + timedelta(days=2))
    assert counts_only(stored_metrics(app)) == expected_metrics(kept)
    with app.app_context():
        ranged = calculate_metrics(database(), RETAINED, now=now, start=DAY0, end=now)
    assert (ranged.windows, ranged.first_window) == (6, DAY0 + timedelta(days=2))
    assert counts_only(stored_metrics(app)) == expected_metrics(kept)


def advisory_locks_held(app) -> int:
    with app.app_context():
        return db.session.execute(sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")).scalar_one()


def test_a_run_reports_how_long_it_took_and_leaves_no_lock_behind(app):
    store(app, 1, DAY0 + timedelta(hours=1))
    held_before = advisory_locks_held(app)  # (a test session borrowing its database holds one)
    began = time.monotonic()
    summary = calculate(app, now=DAY0 + timedelta(days=1))
    took_ms = (time.monotonic() - began) * 1000
    assert 0 < summary.duration_ms <= took_ms
    assert advisory_locks_held(app) == held_before


def test_a_failed_run_records_its_error_cut_to_2000_characters(app):
    store(app, 1, DAY0 + timedelta(hours=1))

    def fail(progress: CalculationProgress) -> None:
        raise RuntimeError("x" * 3000)

    with pytest.raises(RuntimeError):
        calculate(app, now=DAY0 + timedelta(days=1), progress=fail)
    with app.app_context():
        error = db.session.execute(sa.text("SELECT error FROM calculation_runs")).scalar_one()
    assert error == ("RuntimeError: " + "x" * 3000)[:2000]
