"""Registering the periodic calculation with rq-scheduler on real Redis."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from dataclasses import replace

from app.extensions import runtime, settings
from app.jobs.schedule import make_scheduler, next_run, next_scheduled_run, sync_periodic_jobs

UTC = timezone.utc


@pytest.fixture
def local_zone(monkeypatch):
    """Run as if the machine's local time zone were far from UTC."""
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    yield
    monkeypatch.delenv("TZ")
    time.tzset()


def test_registering_ten_times_leaves_each_periodic_job_once_due_at_its_next_utc_run(app, local_zone):
    with app.app_context():
        scheduler = make_scheduler(runtime().background_redis, settings())
        before = datetime.now(UTC)
        for _ in range(10):
            sync_periodic_jobs(scheduler, settings(), datetime.now(UTC))
        jobs = list(scheduler.get_jobs(with_times=True))
    assert sorted(job.description for job, _ in jobs) == ["periodic calculate-metrics", "periodic maintain-storage"]
    job, due = next((job, due) for job, due in jobs if job.description == "periodic calculate-metrics")
    due = due.replace(tzinfo=UTC)
    assert job.meta["cron_string"] == "1 */4 * * *"
    assert due.minute == 1 and due.hour % 4 == 0 and due.second == 0
    assert before < due <= before.replace(minute=0, second=0, microsecond=0) + timedelta(hours=4, minutes=1)
    storage, storage_due = next((job, due) for job, due in jobs if job.description == "periodic maintain-storage")
    assert storage.meta["cron_string"] == "17 * * * *"
    assert storage_due.minute == 17 and before < storage_due.replace(tzinfo=UTC) <= before + timedelta(hours=1)
    with app.app_context():
        assert next_scheduled_run(runtime().background_redis, settings()) == due  # the calculation's, not the storage job's


def test_a_changed_schedule_replaces_the_old_job(app):
    with app.app_context():
        scheduler = make_scheduler(runtime().background_redis, settings())
        old_ids = sync_periodic_jobs(scheduler, settings(), datetime.now(UTC))
        new_ids = sync_periodic_jobs(scheduler, replace(settings(), metrics_schedule="5 * * * *"), datetime.now(UTC))
        jobs = list(scheduler.get_jobs())
    assert old_ids != new_ids
    assert sorted(job.id for job in jobs) == sorted(new_ids)


@pytest.mark.parametrize(("now", "expected"), [
    (datetime(2025, 10, 23, 0, 0, tzinfo=UTC), datetime(2025, 10, 23, 0, 1, tzinfo=UTC)),
    (datetime(2025, 10, 23, 0, 1, tzinfo=UTC), datetime(2025, 10, 23, 4, 1, tzinfo=UTC)),
    (datetime(2025, 12, 31, 22, 0, tzinfo=UTC), datetime(2026, 1, 1, 0, 1, tzinfo=UTC)),
])
def test_next_run_reads_the_cron_in_utc(now, expected, local_zone):
    assert next_run("1 */4 * * *", now) == expected
