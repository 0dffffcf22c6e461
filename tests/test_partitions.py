"""Events partitioned by day: the migration that moves today's table, and partitions made ahead and on demand."""
from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from app.core.partitions import Partition, partition_of, partitions_covering, retention_floor
from app.core.times import utcnow
from app.dev.fixtures import throwaway_database
from app.extensions import database, db
from app.services.partitions import attached_partitions, create_partitions_ahead
from tests.helpers import count_rows, post_event, separate_app

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
    assert partition_of(day) not in partitions(app)
    response = post_event(client, occurred_at=day.isoformat())
    assert response.status_code == 201
    assert partition_of(day) in partitions(app)
    assert client.get("/api/events?from=2021-02-03T00:00:00Z&till=2021-02-04T00:00:00Z").get_json()["events"][0][
        "id"] == response.get_json()["id"]


def test_a_batch_over_days_without_partitions_is_stored_whole(client, app):
    start = datetime(2021, 5, 30, 22, tzinfo=UTC)
    items = [{"user_id": 1, "action": "a", "occurred_at": (start + i * timedelta(hours=9)).isoformat()}
             for i in range(8)]
    assert client.post("/api/events/batch", json={"events": items}).get_json()["created"] == 8
    assert {partition_of(start + i * timedelta(hours=9)) for i in range(8)} <= set(partitions(app))
    assert count_rows(app, "events") == 8


def test_writers_racing_for_a_missing_partition_all_succeed(app):
    day = datetime(2021, 8, 9, 10, tzinfo=UTC)
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
    with app.app_context():
        made = create_partitions_ahead(database(), now, days_ahead=3)
        again = create_partitions_ahead(database(), now, days_ahead=3)
    assert [p.start.day for p in made] == [1, 2, 3, 4]
    assert again == []


def test_an_insert_with_sql_of_its_own_needs_a_partition(app):
    """No default partition catches rows: a partition is made, never implied."""
    with app.app_context(), database().write() as connection, pytest.raises(psycopg.errors.CheckViolation):
        connection.execute("INSERT INTO events (id, user_id, action, occurred_at) "
                           "VALUES (gen_random_uuid(), 1, 'a', '1990-01-01T00:00:00Z')")
