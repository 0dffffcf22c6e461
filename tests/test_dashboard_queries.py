"""Service queries the dashboard reads: newest-first event pages, window totals, run history, schedule."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from app.schedule import make_scheduler, next_scheduled_run, sync_periodic_jobs
from app.services.events import EventFilter, list_events
from app.services.metrics import last_computed_at, latest_metric_window, recent_runs, window_totals
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
        page = list_events(EventFilter(user_id=1), limit=3, newest_first=True)
        seen += [str(event.id) for event in page.events]
        while page.next_cursor is not None:
            page = list_events(EventFilter(user_id=1), limit=3, after=page.next_cursor, newest_first=True)
            seen += [str(event.id) for event in page.events]
    assert seen == list(reversed(ids))

