"""Events partitioned by day: the migration that moves today's table, and partitions made ahead and on demand."""
from __future__ import annotations

import threading
import uuid
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from app.core.partitions import Partition, partition_of, partitions_covering, partitions_for, retention_floor
from app.core.times import utcnow
from app.dev.fixtures import throwaway_database
from app.extensions import database, db
from app.services.partitions import (attached_partitions, create_partitions, create_partitions_ahead,
                                     is_missing_partition)
from tests.helpers import count_rows, drop_partitions, make_partitions, post_event, separate_app

UTC = timezone.utc
DAY = timedelta(days=1)
ROWS = "SELECT id, user_id, action, metadata, occurred_at, received_at FROM events ORDER BY id"


def partitions(app) -> list[Partition]:
    with app.app_context(), database().write() as connection:
        return attached_partitions(connection)


def test_partitions_are_utc_days_and_retention_keeps_the_day_holding_its_limit():
    moment = datetime(2025, 3, 9, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5)))  # 10 March in UTC
    assert partition_of(moment) == Partition(datetime(2025, 3, 10, tzinfo=UTC), datetime(2025, 3, 11, tzinfo=UTC))
    assert partition_of(moment).name == "events_p20250310"
    assert partition_of(datetime(999, 1, 1, tzinfo=UTC)).name == "events_p09990101"
    start = datetime(2025, 3, 10, 12, tzinfo=UTC)
    assert [p.start.day for p in partitions_covering(start, start + 2 * DAY)] == [10, 11, 12]
    assert [p.start.day for p in partitions_covering(start, start)] == [10]
    assert retention_floor(datetime(2025, 3, 31, 6, tzinfo=UTC), 30) == datetime(2025, 3, 1, tzinfo=UTC)
    assert retention_floor(datetime(2025, 3, 31, tzinfo=UTC), 30) == datetime(2025, 3, 1, tzinfo=UTC)


def test_the_migration_moves_every_event_of_several_months_into_day_partitions(servers, app_config):
    with throwaway_database(servers.postgres_url, "tracking_migration") as url:
        with separate_app({**app_config, "DATABASE_URL": url}) as app:
            with app.app_context():
                upgrade(revision="0002_metrics")
                db.session.execute(sa.text("""
                    INSERT INTO events (id, user_id, action, metadata, occurred_at, received_at)
                    SELECT gen_random_uuid(), 1 + n % 7, 'a' || n % 3, jsonb_build_object('n', n),
                           timestamptz '2025-01-15 23:30:00+00' + n * interval '7 hours 13 minutes',
                           timestamptz '2025-06-01 00:00:00+00' + n * interval '1 second'
                    FROM generate_series(1, 1000) AS n
                """))
                db.session.execute(sa.text(
                    "INSERT INTO events (id, user_id, action, occurred_at) VALUES (:id, 3, 'old', '1999-12-31 23:59:59.999999+00')"),
                    {"id": uuid.uuid4()})
                db.session.commit()
                before = db.session.execute(sa.text(ROWS)).all()
                months = db.session.execute(sa.text(
                    "SELECT count(DISTINCT date_trunc('month', occurred_at AT TIME ZONE 'UTC')) FROM events")).scalar_one()
                db.session.commit()  # the migration waits for every reader of the table
                upgrade()
                after = db.session.execute(sa.text(ROWS)).all()
                kind = db.session.execute(sa.text("SELECT relkind FROM pg_class WHERE relname = 'events'")).scalar_one()
                keys = db.session.execute(sa.text("SELECT count(*) FROM event_keys")).scalar_one()
                db.session.commit()
            days = {partition_of(row.occurred_at) for row in before}
            assert months >= 6
            assert kind == "p"
            assert after == before
            assert keys == len(before)
            assert days <= set(partitions(app))
            today = partition_of(utcnow())
            assert {today.start + i * DAY for i in range(8)} <= {p.start for p in partitions(app)}

            # a client retrying an event stored before the migration still gets it once
            first = before[0]
            again = post_event(app.test_client(), id=str(first.id), user_id=first.user_id, action=first.action,
                               metadata=first.metadata, occurred_at=first.occurred_at.isoformat())
            assert again.status_code == 200

            with app.app_context():
                db.session.remove()
                downgrade(revision="0002_metrics")
                restored = db.session.execute(sa.text(ROWS)).all()
                db.session.commit()
            assert restored == after


def test_an_event_for_a_day_without_partition_gets_one(client, app):
    day = datetime(2021, 2, 3, 4, 5, tzinfo=UTC)
    drop_partitions(app, day, day)
    assert partition_of(day) not in partitions(app)
    response = post_event(client, occurred_at=day.isoformat())
    assert response.status_code == 201
    assert partition_of(day) in partitions(app)
    assert client.get("/api/events?from=2021-02-03T00:00:00Z&till=2021-02-04T00:00:00Z").get_json()["events"][0][
        "id"] == response.get_json()["id"]


def test_a_batch_over_days_without_partitions_is_stored_whole(client, app):
    start = datetime(2021, 5, 30, 22, tzinfo=UTC)
    drop_partitions(app, start, start + 8 * timedelta(hours=9))
    items = [{"user_id": 1, "action": "a", "occurred_at": (start + i * timedelta(hours=9)).isoformat()}
             for i in range(8)]
    assert client.post("/api/events/batch", json={"events": items}).get_json()["created"] == 8
    assert {partition_of(start + i * timedelta(hours=9)) for i in range(8)} <= set(partitions(app))
    assert count_rows(app, "events") == 8


def test_writers_racing_for_a_missing_partition_all_succeed(app):
    day = datetime(2021, 8, 9, 10, tzinfo=UTC)
    drop_partitions(app, day, day)
    barrier = threading.Barrier(6)
    statuses: list[int] = []

    def deliver(user_id: int) -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(post_event(client, user_id=user_id, occurred_at=day.isoformat()).status_code)

    threads = [threading.Thread(target=deliver, args=(user_id,)) for user_id in range(1, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Counter(statuses) == {201: 6}
    assert [p for p in partitions(app) if p == partition_of(day)] == [partition_of(day)]


def test_partitions_ahead_are_made_once_however_often_the_job_runs(app):
    now = datetime(2031, 1, 1, 12, tzinfo=UTC)
    drop_partitions(app, now, now + 5 * DAY)
    with app.app_context():
        made = create_partitions_ahead(database(), now, days_ahead=3)
        again = create_partitions_ahead(database(), now, days_ahead=3)
    assert made == partitions_covering(datetime(2031, 1, 1, tzinfo=UTC), datetime(2031, 1, 5, tzinfo=UTC))
    assert [p.name for p in made] == ["events_p20310101", "events_p20310102", "events_p20310103", "events_p20310104"]
    assert again == []
    assert set(made) <= set(partitions(app))


def test_a_longer_reach_ahead_makes_only_the_days_still_missing(app):
    """The job run with a larger EVENTS_PARTITIONS_AHEAD_DAYS adds the days past those it already has."""
    now = datetime(2031, 3, 1, 12, tzinfo=UTC)
    drop_partitions(app, now, now + 5 * DAY)
    with app.app_context():
        create_partitions_ahead(database(), now, days_ahead=1)
        more = create_partitions_ahead(database(), now, days_ahead=3)
    assert [p.name for p in more] == ["events_p20310303", "events_p20310304"]
    assert {p.start.day for p in partitions(app) if (p.start.year, p.start.month) == (2031, 3)} == {1, 2, 3, 4}


def test_an_insert_with_sql_of_its_own_needs_a_partition(app):
    """No default partition catches rows: a partition is made, never implied."""
    with app.app_context(), database().write() as connection, pytest.raises(psycopg.errors.CheckViolation):
        connection.execute("INSERT INTO events (id, user_id, action, occurred_at) "
                           "VALUES (gen_random_uuid(), 1, 'a', '1990-01-01T00:00:00Z')")


def test_a_moment_without_an_offset_is_refused_rather_than_guessed():
    """A naive datetime could be any zone's: no partition is picked for it."""
    with pytest.raises(ValueError) as refused:
        partition_of(datetime(2025, 3, 10, 12))
    assert str(refused.value) == "datetime must be timezone-aware"


def test_a_day_partition_runs_from_midnight_to_midnight_utc_and_ends_where_the_next_begins():
    midnight = datetime(2025, 3, 10, tzinfo=UTC)
    assert partition_of(midnight).start == midnight
    assert partition_of(midnight - timedelta(microseconds=1)).name == "events_p20250309"
    assert partitions_covering(midnight, midnight + 2 * DAY) == [partition_of(midnight), partition_of(midnight + DAY)]
    moments = [midnight + timedelta(hours=30), midnight + timedelta(hours=1), midnight + timedelta(hours=23)]
    assert [p.name for p in partitions_for(moments)] == ["events_p20250310", "events_p20250311"]


WEEK = 7 * DAY


def test_week_spans_as_the_benchmark_compares_start_on_mondays():
    """bench/scale_data.py partitions a table per week to compare with days: the same functions, another span."""
    thursday = datetime(2025, 3, 13, 15, tzinfo=UTC)
    monday = datetime(2025, 3, 10, tzinfo=UTC)
    assert partition_of(thursday, WEEK) == Partition(monday, monday + WEEK)
    assert partitions_covering(thursday, thursday + 2 * WEEK, WEEK) == [
        Partition(monday + i * WEEK, monday + (i + 1) * WEEK) for i in range(3)]
    assert partitions_for([thursday + WEEK, thursday, monday], WEEK) == [Partition(monday, monday + WEEK),
                                                                        Partition(monday + WEEK, monday + 2 * WEEK)]
    assert retention_floor(thursday + 2 * WEEK, 14, WEEK) == monday


def test_a_table_partitioned_per_week_gets_its_own_partitions_once(app):
    """create_partitions works for any parent (the benchmark's week table), not only `events`."""
    start, end = datetime(2025, 3, 12, tzinfo=UTC), datetime(2025, 3, 26, tzinfo=UTC)
    wanted = [replace(p, parent="events_by_week") for p in partitions_covering(start, end, WEEK)]
    with app.app_context(), database().write() as connection:
        connection.execute("DROP TABLE IF EXISTS events_by_week")
        connection.execute("CREATE TABLE events_by_week (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS) "
                           "PARTITION BY RANGE (occurred_at)")
        # rows outside every week would land here; it is no time partition of its own
        connection.execute("CREATE TABLE events_by_week_rest PARTITION OF events_by_week DEFAULT")
        try:
            made = create_partitions(connection, wanted)
            again = create_partitions(connection, wanted)
            listed = attached_partitions(connection, "events_by_week")
            names = connection.execute("SELECT inhrelid::regclass::text FROM pg_inherits "
                                       "WHERE inhparent = 'events_by_week'::regclass ORDER BY 1").fetchall()
        finally:
            connection.execute("DROP TABLE events_by_week")
    assert [p.name for p in made] == ["events_by_week_p20250310", "events_by_week_p20250317",
                                      "events_by_week_p20250324"]
    assert again == []
    assert [(p.start, p.end, p.name) for p in listed] == [(p.start, p.end, p.name) for p in made]
    assert [row[0] for row in names] == [p.name for p in made] + ["events_by_week_rest"]


def test_only_an_insert_refused_for_want_of_a_partition_counts_as_a_missing_partition(app):
    """The write path makes partitions and retries for that refusal alone; a broken check is raised as it is."""
    make_partitions(app, datetime(2021, 4, 1, tzinfo=UTC), datetime(2021, 4, 2, tzinfo=UTC))
    drop_partitions(app, datetime(1990, 1, 1, tzinfo=UTC), datetime(1990, 1, 1, tzinfo=UTC))
    insert = "INSERT INTO events (id, user_id, action, occurred_at) VALUES (gen_random_uuid(), %s, 'a', %s)"
    with app.app_context(), database().write() as connection:
        with pytest.raises(psycopg.errors.CheckViolation) as no_partition:
            connection.execute(insert, (1, datetime(1990, 1, 1, tzinfo=UTC)))
        with pytest.raises(psycopg.errors.CheckViolation) as bad_user:
            connection.execute(insert, (0, datetime(2021, 4, 1, 12, tzinfo=UTC)))
    assert is_missing_partition(no_partition.value)
    assert not is_missing_partition(bad_user.value)
    assert not is_missing_partition(ValueError("no partition of relation \"events\" found for row"))
