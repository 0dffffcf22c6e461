"""Service queries the dashboard reads: newest-first event pages, window totals, run history, schedule."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from app.jobs.schedule import make_scheduler, next_scheduled_run, sync_periodic_jobs
from app.services.events import EventFilter, list_events
from app.extensions import database, runtime, settings
from app.services.metrics import last_finished_run, latest_metric_window, open_windows, recent_runs, window_totals
from tests.helpers import post_event

UTC = timezone.utc
DAY0 = datetime(2025, 10, 20, tzinfo=UTC)
FOUR_HOURS = timedelta(hours=4)


def store(client, user_id, when, action="page_view"):
    response = post_event(client, user_id=user_id, action=action, occurred_at=when.isoformat())
    assert response.status_code == 201
    return response.get_json()


def test_newest_first_pages_walk_backwards_without_gaps(app, client):
    ids = [store(client, 1, DAY0 + timedelta(minutes=i))["id"] for i in range(7)]
    store(client, 2, DAY0)
    seen = []
    with app.app_context():
        page = list_events(database(), EventFilter(user_id=1), limit=3, newest_first=True)
        seen += [str(event.id) for event in page.events]
        while page.next_cursor is not None:
            page = list_events(database(), EventFilter(user_id=1), limit=3, after=page.next_cursor, newest_first=True)
            seen += [str(event.id) for event in page.events]
    assert seen == list(reversed(ids))



def test_window_totals_sum_users_fill_empty_windows_and_tell_pending_apart(app, client, runner):
    store(client, 1, DAY0 + timedelta(hours=1))
    store(client, 1, DAY0 + timedelta(hours=2), action="click")
    store(client, 2, DAY0 + timedelta(hours=3), action="click")
    store(client, 2, DAY0 + timedelta(hours=9))
    store(client, 3, DAY0 + timedelta(hours=13))
    assert runner.invoke(args=["calculate-metrics", "--from", "2025-10-20T00:00:00Z",
                               "--till", "2025-10-20T12:00:00Z"]).exit_code == 0
    closed = DAY0 + 5 * FOUR_HOURS
    with app.app_context():
        totals = window_totals(database(), DAY0 - FOUR_HOURS, DAY0 + 6 * FOUR_HOURS, FOUR_HOURS, closed)
        one_user = window_totals(database(), DAY0, DAY0 + 4 * FOUR_HOURS, FOUR_HOURS, closed, user_id=2)
    assert [(t.window_start.hour, t.users, t.events, t.state) for t in totals] == [
        (20, 0, 0, "counted"),  # no events: nothing to count
        (0, 2, 3, "counted"), (4, 0, 0, "counted"), (8, 1, 1, "counted"),
        (12, 0, 0, "pending"),  # closed and holding an event, but the run above stopped at 12:00
        (16, 0, 0, "counted"),
        (20, 0, 0, "open")]
    assert totals[1].actions == {"page_view": 1, "click": 2}
    assert totals[1].window_end == DAY0 + FOUR_HOURS
    assert [(t.events, t.actions) for t in one_user[:3]] == [(1, {"click": 1}), (0, {}), (1, {"page_view": 1})]


def test_latest_window_last_computed_and_recent_runs(app, client, runner):
    with app.app_context():
        assert latest_metric_window(database()) is None
        assert last_finished_run(database()) is None
        assert recent_runs(database()) == []
    store(client, 1, DAY0 + timedelta(hours=1))
    store(client, 2, DAY0 + timedelta(hours=5))
    for _ in range(3):
        assert runner.invoke(args=["calculate-metrics"]).exit_code == 0
    with app.app_context():
        assert latest_metric_window(database()) == DAY0 + FOUR_HOURS
        assert latest_metric_window(database(), user_id=1) == DAY0
        assert latest_metric_window(database(), user_id=1, since=DAY0 + timedelta(hours=1)) is None
        last_run = last_finished_run(database())
        newest_two = recent_runs(database(), limit=2)
        every_run = recent_runs(database())
    assert [run.id for run in newest_two] == [run.id for run in every_run[:2]]
    assert [run.id for run in every_run] == sorted((run.id for run in every_run), reverse=True)
    assert all(run.status == "finished" and run.trigger == "cli" for run in every_run)
    assert all(run.duration is not None and run.duration >= timedelta(0) for run in every_run)
    oldest = every_run[-1]
    assert (oldest.users, oldest.events, oldest.first_window) == (2, 2, DAY0)
    assert [run.events for run in newest_two] == [0, 0], "later runs found nothing new to count"
    assert last_run == every_run[0], "the last finished run, though it counted nothing"


def test_next_scheduled_run_reads_the_registered_job(app):
    with app.app_context():
        assert next_scheduled_run(runtime().background_redis, settings()) is None
        scheduler = make_scheduler(runtime().background_redis, settings())
        before = datetime.now(UTC)
        sync_periodic_jobs(scheduler, settings(), datetime.now(UTC))
        due = next_scheduled_run(runtime().background_redis, settings())
    assert due is not None and due.tzinfo is not None
    assert before < due <= before + FOUR_HOURS + timedelta(minutes=1)
    assert due.minute == 1 and due.hour % 4 == 0


def test_open_windows_count_events_users_and_actions_so_far(app, client):
    for user_id, minutes, action in ((1, 10, "page_view"), (1, 20, "click"), (2, 30, "click")):
        store(client, user_id, DAY0 + FOUR_HOURS + timedelta(minutes=minutes), action)
    store(client, 3, DAY0 + timedelta(hours=3, minutes=59))  # the window before: closed once settled
    store(client, 4, DAY0 + 2 * FOUR_HOURS)  # the next window: not begun at `now`
    size, settle = FOUR_HOURS, timedelta(seconds=30)
    now = DAY0 + FOUR_HOURS + timedelta(hours=1)
    with app.app_context():
        live = open_windows(database(), now, size, settle)
        one_user = open_windows(database(), now, size, settle, user_id=1)
        nobody = open_windows(database(), now, size, settle, user_id=99)
        settling = open_windows(database(), DAY0 + FOUR_HOURS + timedelta(seconds=10), size, settle)
        later_range = open_windows(database(), now, size, settle, start=DAY0 + FOUR_HOURS + timedelta(minutes=1))
        earlier_range = open_windows(database(), now, size, settle, end=DAY0 + FOUR_HOURS)
    assert [(w.window_start, w.window_end, w.users, w.events, w.actions, w.state) for w in live] == [
        (DAY0 + FOUR_HOURS, DAY0 + 2 * FOUR_HOURS, 2, 3, {"page_view": 1, "click": 2}, "open")]
    assert [(w.users, w.events, w.actions) for w in one_user] == [(1, 2, {"page_view": 1, "click": 1})]
    assert [(w.users, w.events, w.actions) for w in nobody] == [(0, 0, {})], "open, and empty so far"
    assert [(w.window_start, w.events) for w in settling] == [(DAY0, 1), (DAY0 + FOUR_HOURS, 3)], \
        "the window just ended stays open while it settles"
    assert later_range == [] and earlier_range == [], "only windows whose start lies in [from, till)"
