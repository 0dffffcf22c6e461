"""Retention: whole day partitions beyond EVENTS_RETENTION_DAYS go, everything else stays."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from app.core.partitions import partition_of
from app.core.times import utcnow
from app.core.validation import InputBounds, parse_event
from app.extensions import database, db, settings
from app.jobs.storage import maintain_storage
from app.jobs.tasks import calculation_settings
from app.services.calculation import CalculationSettings, calculate_metrics
from app.services.events import record_events
from app.services.partitions import attached_partitions
from app.services.retention import RetentionPolicy, apply_retention
from tests.helpers import post_event

UTC = timezone.utc
FOUR = timedelta(hours=4)
NOW = datetime(2024, 3, 20, 12, tzinfo=UTC)
LIMIT = datetime(2024, 3, 15, tzinfo=UTC)  # 5 days before NOW, down to its partition's start
POLICY = RetentionPolicy(events_days=5, window_size=FOUR)
MOMENTS = [
    datetime(2024, 3, 1, 9, tzinfo=UTC),
    datetime(2024, 3, 14, 23, 59, 59, 999999, tzinfo=UTC),  # last instant of the newest partition that goes
    LIMIT,                                                   # first instant of the oldest one kept
    datetime(2024, 3, 15, 6, tzinfo=UTC),                    # older than 5 days, in a partition not wholly so
    datetime(2024, 3, 19, 22, tzinfo=UTC),
]


def store_events(client) -> list[dict]:
    items = [{"id": str(uuid.uuid4()), "user_id": 1 + i % 2, "action": f"a{i}", "occurred_at": moment.isoformat()}
             for i, moment in enumerate(MOMENTS)]
    assert client.post("/api/events/batch", json={"events": items}).status_code == 200
    return items


def table(app, query: str) -> list[tuple]:
    with app.app_context():
        rows = [tuple(row) for row in db.session.execute(sa.text(query))]
        db.session.commit()
    return rows


METRICS = "SELECT user_id, window_start, event_count, actions::text FROM user_activity_metrics ORDER BY 1, 2"
EVENTS = "SELECT occurred_at FROM events ORDER BY 1"
KEYS = "SELECT occurred_at FROM event_keys ORDER BY 1"


def partitions(app) -> set[datetime]:
    with app.app_context(), database().write() as connection:
        return {p.start for p in attached_partitions(connection)}


def test_retention_drops_only_whole_partitions_beyond_the_limit_and_no_metric(client, app):
    store_events(client)
    with app.app_context():
        calculate_metrics(database(), CalculationSettings(window_size=FOUR), now=NOW)
    metrics = table(app, METRICS)
    assert len(metrics) == len(MOMENTS)

    with app.app_context():
        planned = apply_retention(database(), POLICY, NOW, dry_run=True)
    # (empty partitions older still, left by other tests, go too)
    assert all(p.end <= LIMIT for p in planned.partitions)
    assert [p.start for p in planned.partitions if p.start.year == 2024] == [datetime(2024, 3, 1, tzinfo=UTC),
                                                                             datetime(2024, 3, 14, tzinfo=UTC)]
    assert planned.keys_removed == 2
    assert len(table(app, EVENTS)) == len(MOMENTS)  # a dry run changes nothing

    with app.app_context():
        report = apply_retention(database(), POLICY, NOW)
    assert report.partitions == planned.partitions
    assert [row[0] for row in table(app, EVENTS)] == MOMENTS[2:]
    assert [row[0] for row in table(app, KEYS)] == MOMENTS[2:]
    assert not {datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 14, tzinfo=UTC)} & partitions(app)
    assert {LIMIT, datetime(2024, 3, 19, tzinfo=UTC)} <= partitions(app)
    assert table(app, METRICS) == metrics

    # a recalculation of the whole range leaves alone the windows whose events are gone
    with app.app_context():
        calculate_metrics(database(), CalculationSettings(window_size=FOUR, events_retention_days=5), now=NOW,
                          start=MOMENTS[0], end=NOW - timedelta(hours=8))
    assert table(app, METRICS) == metrics
    with app.app_context():
        assert apply_retention(database(), POLICY, NOW).partitions == []


def test_without_limits_retention_keeps_everything(client, app):
    store_events(client)
    with app.app_context():
        report = apply_retention(database(), RetentionPolicy(window_size=FOUR), NOW)
    assert (report.partitions, report.keys_removed, report.metrics_removed) == ([], 0, 0)
    assert len(table(app, EVENTS)) == len(MOMENTS)


def test_metrics_retention_deletes_old_windows_and_they_are_not_computed_again(client, app):
    store_events(client)
    with app.app_context():
        calculate_metrics(database(), CalculationSettings(window_size=FOUR), now=NOW)
        policy = RetentionPolicy(metrics_days=5, window_size=FOUR)
        assert apply_retention(database(), policy, NOW).metrics_removed == 4
        calculate_metrics(database(), CalculationSettings(window_size=FOUR, metrics_retention_days=5), now=NOW,
                          start=MOMENTS[0], end=NOW - timedelta(hours=8))
    assert [row[1] for row in table(app, METRICS)] == [datetime(2024, 3, 19, 20, tzinfo=UTC)]
    assert len(table(app, EVENTS)) == len(MOMENTS)  # the events themselves are kept


class TestWithEventsKeptFiveDays:
    """The same app with EVENTS_RETENTION_DAYS=5."""

    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "EVENTS_RETENTION_DAYS": 5}

    def test_an_event_older_than_the_retention_is_refused_naming_the_bound(self, client, app):
        too_old = post_event(client, occurred_at=(utcnow() - timedelta(days=5, minutes=1)).isoformat())
        assert too_old.status_code == 400
        error = too_old.get_json()["error"]
        assert error["field"] == "occurred_at"
        assert "5 days" in error["message"] and "EVENTS_RETENTION_DAYS" in error["message"]
        assert post_event(client, occurred_at=(utcnow() - timedelta(days=4, hours=23)).isoformat()).status_code == 201
        batch = client.post("/api/events/batch", json={"events": [
            {"user_id": 1, "action": "a"},
            {"user_id": 1, "action": "a", "occurred_at": (utcnow() - timedelta(days=6)).isoformat()}]})
        assert batch.status_code == 400
        assert batch.get_json()["error"]["details"][0]["index"] == 1

    def test_the_cli_dry_run_names_what_the_real_run_drops(self, client, app, runner):
        now = utcnow()
        old, recent = now - timedelta(days=9), now - timedelta(days=1)
        with app.app_context():
            # stored before the limit was set: the service would now refuse the old one
            news = [parse_event({"user_id": 1, "action": "a", "occurred_at": moment.isoformat()}, now=now,
                                bounds=InputBounds()) for moment in (old, recent)]
            record_events(database(), news, now=now, window_size=FOUR)
        dry = json.loads(runner.invoke(args=["apply-retention", "--dry-run"]).output)
        assert dry["dry_run"] is True
        # (empty partitions older still, left by other tests, go too)
        assert partition_of(old).name in dry["partitions_dropped"]
        assert partition_of(recent).name not in dry["partitions_dropped"]
        assert len(table(app, EVENTS)) == 2
        done = json.loads(runner.invoke(args=["apply-retention"]).output)
        assert done["partitions_dropped"] == dry["partitions_dropped"]
        assert [row[0] for row in table(app, EVENTS)] == [recent]

    def test_the_storage_job_makes_partitions_ahead_then_applies_retention(self, app):
        now = datetime(2032, 6, 1, 12, tzinfo=UTC)
        with app.app_context():
            result = maintain_storage(database(), settings(), now)
            assert calculation_settings(settings()).events_retention_days == 5
            days_ahead = settings().events_partitions_ahead_days
        assert result["partitions_created"][0] == "events_p20320601"
        assert len(result["partitions_created"]) == days_ahead + 1
        assert result["events_before"] == "2032-05-27T00:00:00.000000Z"

    def test_the_events_page_shows_the_oldest_event_and_the_retention(self, client, app):
        assert "none yet" in client.get("/events").get_data(as_text=True)
        moment = utcnow() - timedelta(days=2)
        post_event(client, occurred_at=moment.isoformat())
        page = client.get("/events").get_data(as_text=True)
        note = page.split('id="storage-note"', 1)[1].split("</p>", 1)[0]
        assert moment.strftime("%Y-%m-%d") in note
        assert "5 days" in note
