"""Retention: whole day partitions beyond EVENTS_RETENTION_DAYS go, everything else stays."""
from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
import sqlalchemy as sa

from app.core.partitions import Partition, partition_of, partitions_for
from app.core.times import utcnow
from app.core.validation import InputBounds, parse_event
from app.extensions import database, db, settings
from app.jobs.storage import maintain_storage
from app.jobs.tasks import calculation_settings
from app.services.calculation import CalculationSettings, calculate_metrics
from app.services.events import record_events
from app.services.partitions import attached_partitions
from app.services.retention import KEY_CHUNK, RetentionPolicy, apply_retention, oldest_computable_window
from tests.helpers import drop_partitions, make_partitions, post_event, wait_until

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
            news = [parse_event(json.dumps({"user_id": 1, "action": "a", "occurred_at": moment.isoformat()}).encode(), now=now,
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
        drop_partitions(app, now, now + timedelta(days=8))  # the default 7 days ahead, and today
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


def leave_half_detached(app, partition: Partition) -> None:
    """What a retention run interrupted mid-detach leaves: the partition marked "detach pending".

    DETACH ... CONCURRENTLY commits that mark, then waits for every transaction that may still
    see the partition; an open reader keeps it waiting until its statement timeout cancels it.
    """
    make_partitions(app, partition.start, partition.end)
    with app.app_context():
        url = settings().database_url
    with psycopg.connect(url) as reader, psycopg.connect(url, autocommit=True) as retention:
        reader.execute("SELECT count(*) FROM events").fetchone()
        retention.execute("SET statement_timeout = '100ms'")
        with pytest.raises(psycopg.errors.QueryCanceled):
            retention.execute(f"ALTER TABLE events DETACH PARTITION {partition.name} CONCURRENTLY")


def exists(app, name: str) -> bool:
    return table(app, f"SELECT to_regclass('{name}') IS NOT NULL")[0][0]


def test_a_partition_a_run_left_half_detached_is_dropped_by_the_next_even_without_limits(client, app):
    store_events(client)
    half = partition_of(datetime(2024, 3, 17, 8, tzinfo=UTC))
    drop_partitions(app, half.start, half.end)
    leave_half_detached(app, half)
    with app.app_context(), database().write() as connection:
        assert half.start not in {p.start for p in attached_partitions(connection)}
        assert [p.name for p in attached_partitions(connection, detaching=True)] == [half.name]

    with app.app_context():
        planned = apply_retention(database(), RetentionPolicy(window_size=FOUR), NOW, dry_run=True)
    assert [p.name for p in planned.partitions] == [half.name]
    assert exists(app, half.name)

    with app.app_context():
        report = apply_retention(database(), RetentionPolicy(window_size=FOUR), NOW)
        assert apply_retention(database(), RetentionPolicy(window_size=FOUR), NOW).partitions == []
    assert [p.name for p in report.partitions] == [half.name]
    assert not exists(app, half.name)
    assert {p.start for p in partitions_for(MOMENTS)} <= partitions(app)
    assert [row[0] for row in table(app, EVENTS)] == MOMENTS


def test_a_run_finishes_a_half_done_detach_before_it_detaches_older_partitions(client, app):
    """PostgreSQL detaches no partition CONCURRENTLY while another is pending: the pending one must go first."""
    store_events(client)
    half = partition_of(datetime(2024, 3, 10, tzinfo=UTC))  # expired, between the two other expired days
    drop_partitions(app, half.start, half.end)
    leave_half_detached(app, half)
    with app.app_context():
        report = apply_retention(database(), POLICY, NOW)
    expired = {half.start, datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 14, tzinfo=UTC)}
    assert report.partitions[0] == half
    assert expired <= {p.start for p in report.partitions}
    assert not expired & partitions(app)
    assert not exists(app, half.name)
    assert [row[0] for row in table(app, EVENTS)] == MOMENTS[2:]


def test_the_keys_of_more_events_than_one_chunk_all_go(app):
    """Keys go in chunks of KEY_CHUNK: the last, partial chunk goes too, and the key at the limit stays."""
    with app.app_context():
        db.session.execute(sa.text(
            "INSERT INTO event_keys (user_id, id, occurred_at) "
            "SELECT 1, gen_random_uuid(), :first + n * interval '1 second' FROM generate_series(1, :count) AS n"),
            {"first": LIMIT - timedelta(days=1), "count": KEY_CHUNK + 1})
        db.session.execute(sa.text("INSERT INTO event_keys (user_id, id, occurred_at) VALUES (2, :id, :at)"),
                           {"id": uuid.uuid4(), "at": LIMIT})
        db.session.commit()
        report = apply_retention(database(), POLICY, NOW)
    assert report.keys_removed == KEY_CHUNK + 1
    assert [row[0] for row in table(app, KEYS)] == [LIMIT]


def test_the_calculation_never_reaches_back_past_either_limit():
    now = datetime(2025, 10, 23, 13, 7, tzinfo=UTC)
    assert oldest_computable_window(RetentionPolicy(), now) is None
    assert oldest_computable_window(RetentionPolicy(events_days=5), now) == datetime(2025, 10, 18, tzinfo=UTC)
    assert oldest_computable_window(RetentionPolicy(metrics_days=3), now) == datetime(2025, 10, 20, 12, tzinfo=UTC)
    # the later of the two limits: older windows would wipe metrics of dropped events or revive deleted ones
    assert oldest_computable_window(RetentionPolicy(5, 3), now) == datetime(2025, 10, 20, 12, tzinfo=UTC)
    assert oldest_computable_window(RetentionPolicy(2, 3), now) == datetime(2025, 10, 21, tzinfo=UTC)
    assert oldest_computable_window(RetentionPolicy(metrics_days=3, window_size=timedelta(hours=1)), now) \
        == datetime(2025, 10, 20, 13, tzinfo=UTC)


class TestWithBothLimitsOnAFixedClock:
    """EVENTS_RETENTION_DAYS=5 and METRICS_RETENTION_DAYS=3 on 2025-10-23 13:07 UTC (the `clock` fixture):
    events go before 2025-10-18 00:00 (a day's start), metrics before 2025-10-20 12:00 (a window's)."""

    @pytest.fixture
    def app_config(self, app_config):
        return {**app_config, "EVENTS_RETENTION_DAYS": 5, "METRICS_RETENTION_DAYS": 3}

    def test_the_cli_dry_run_counts_exactly_what_the_real_run_then_removes(self, app, runner, clock):
        moments = [datetime(2025, 10, 17, 23, 59, 59, 999999, tzinfo=UTC),  # last instant of a dropped day
                   datetime(2025, 10, 18, tzinfo=UTC),                         # first instant of a kept one
                   datetime(2025, 10, 20, 11, 59, 59, tzinfo=UTC),             # a window whose metrics go
                   datetime(2025, 10, 20, 12, tzinfo=UTC),                     # the oldest window kept
                   datetime(2025, 10, 22, 10, tzinfo=UTC)]
        with app.app_context():
            # stored with client ids (so with keys) before the limits were set
            news = [parse_event(json.dumps({"id": str(uuid.uuid4()), "user_id": 1, "action": "a",
                                 "occurred_at": moment.isoformat()}).encode(), now=clock.now, bounds=InputBounds())
                    for moment in moments]
            record_events(database(), news, now=clock.now, window_size=FOUR)
            calculate_metrics(database(), CalculationSettings(window_size=FOUR), now=clock.now)
        windows = [row[1] for row in table(app, METRICS)]
        assert len(windows) == 5

        dry = json.loads(runner.invoke(args=["apply-retention", "--dry-run"]).output)
        dropped = dry.pop("partitions_dropped")
        assert dry == {"dry_run": True, "events_before": "2025-10-18T00:00:00.000000Z", "keys_removed": 1,
                       "metrics_before": "2025-10-20T12:00:00.000000Z", "metrics_removed": 3}
        assert "events_p20251017" in dropped
        assert all(name < "events_p20251018" for name in dropped)  # names sort with time
        assert [row[0] for row in table(app, EVENTS)] == moments
        assert len(table(app, METRICS)) == 5

        done = json.loads(runner.invoke(args=["apply-retention"]).output)
        assert done == {**dry, "dry_run": False, "partitions_dropped": dropped}
        assert [row[0] for row in table(app, EVENTS)] == moments[1:]
        assert [row[0] for row in table(app, KEYS)] == moments[1:]
        assert [row[1] for row in table(app, METRICS)] == windows[3:]
        assert not exists(app, "events_p20251017") and exists(app, "events_p20251018")

    def test_with_only_metrics_limited_no_event_or_key_goes(self, app, runner, clock):
        with app.app_context():
            db.session.execute(sa.text("INSERT INTO event_keys (user_id, id, occurred_at) VALUES (1, :id, :at)"),
                               {"id": uuid.uuid4(), "at": datetime(2000, 1, 1, tzinfo=UTC)})
            db.session.commit()
            policy = RetentionPolicy(metrics_days=3, window_size=FOUR)
            planned = apply_retention(database(), policy, clock.now, dry_run=True)
            report = apply_retention(database(), policy, clock.now)
        for run in (planned, report):
            assert (run.events_before, run.partitions, run.keys_removed) == (None, [], 0)
        assert len(table(app, KEYS)) == 1


def test_events_still_go_in_while_a_long_read_holds_the_retention_back(client, app):
    """A partition is detached CONCURRENTLY (or its detach, left half done by an earlier run, finished):
    the run waits for an open export, and writers and readers do not queue behind it (a plain DROP
    would lock all of `events` until the export ends)."""
    store_events(client)
    half = partition_of(datetime(2024, 2, 20, tzinfo=UTC))
    drop_partitions(app, half.start, half.end)
    leave_half_detached(app, half)
    with app.app_context():
        url = settings().database_url
    outcome: list[object] = []

    def run() -> None:
        with app.app_context():
            outcome.append(apply_retention(database(), POLICY, NOW))

    with psycopg.connect(url) as export, psycopg.connect(url, autocommit=True) as writer:
        export.execute("SELECT count(*) FROM events").fetchone()  # a CSV export, part way through
        retention = threading.Thread(target=run)
        retention.start()
        try:
            wait_until(lambda: writer.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                              "current_database() AND wait_event_type = 'Lock'").fetchone()[0],
                       timeout=10, interval=0.01, what="the retention run waiting for the export")
            writer.execute("SET lock_timeout = '1s'")
            writer.execute("INSERT INTO events (id, user_id, action, occurred_at) "
                           "VALUES (gen_random_uuid(), 3, 'during', %s)", (MOMENTS[-1] + timedelta(hours=1),))
            assert writer.execute("SELECT count(*) FROM events WHERE user_id = 3").fetchone()[0] == 1
        finally:
            export.rollback()
            retention.join(timeout=10)
    report = outcome[0]
    assert report.partitions[0] == half
    assert [p.start for p in report.partitions if p.start.year == 2024] == [half.start,
                                                                           datetime(2024, 3, 1, tzinfo=UTC),
                                                                           datetime(2024, 3, 14, tzinfo=UTC)]
    assert not exists(app, half.name)
    assert [row[0] for row in table(app, EVENTS)] == MOMENTS[2:] + [MOMENTS[-1] + timedelta(hours=1)]
