"""The periodic jobs and the rq-scheduler process that fires them.

The list of periodic jobs is fixed in code; each job's id derives from its
definition, so registering again (every scheduler start) is idempotent, and
a changed definition replaces the old entry instead of adding a second one.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import crontab
from flask import current_app
from rq_scheduler import Scheduler

from .queue import keep_running, namespaced, namespaced_id, redis_connection
from .services.jobs import CALCULATE_FUNC
from .timeutil import utcnow


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    func: str
    cron: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        definition = json.dumps([self.func, self.cron, self.kwargs], sort_keys=True)
        return namespaced_id(f"periodic-{self.name}-{hashlib.sha1(definition.encode()).hexdigest()[:10]}")


def periodic_jobs() -> list[PeriodicJob]:
    return [
        PeriodicJob("calculate-metrics", CALCULATE_FUNC, current_app.config["METRICS_SCHEDULE"],
                    {"trigger": "schedule"}),
    ]


def next_run(cron: str, now: datetime) -> datetime:
    """The next time `cron` fires after `now`, reading the expression in UTC."""
    delay = crontab.CronTab(cron).next(now=now.astimezone(timezone.utc), default_utc=True)
    return now + timedelta(seconds=delay)


class AppScheduler(Scheduler):
    """rq-scheduler with its keys under the app's namespace."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scheduler_key = namespaced("rq:scheduler")
        self.scheduler_lock_key = namespaced("rq:scheduler_lock")
        self.scheduled_jobs_key = namespaced("rq:scheduler:scheduled_jobs")
        self.redis_scheduler_namespace_prefix = namespaced("rq:scheduler_instance:")


def make_scheduler(interval: int = 30) -> AppScheduler:
    return AppScheduler(queue_name=namespaced("metrics"), connection=redis_connection(), interval=interval)


def sync_periodic_jobs(scheduler: AppScheduler, now: datetime | None = None) -> list[str]:
    """Make the scheduled periodic jobs match `periodic_jobs()`; returns their ids."""
    now = now or utcnow()
    wanted = {job.id: job for job in periodic_jobs()}
    prefix = namespaced_id("periodic-")
    for existing in scheduler.get_jobs():
        if existing.id.startswith(prefix) and existing.id not in wanted:
            scheduler.cancel(existing)
            existing.delete()
    config = current_app.config
    for job_id, job in wanted.items():
        if job_id in scheduler:
            continue
        scheduler.cron(job.cron, func=job.func, kwargs=job.kwargs, id=job_id, queue_name=namespaced("metrics"),
                       timeout=config["METRICS_JOB_TIMEOUT"], result_ttl=24 * 3600,
                       description=f"periodic {job.name}")
        # rq-scheduler computes the first run in local time; set it from UTC explicitly.
        scheduler.connection.zadd(scheduler.scheduled_jobs_key, {job_id: next_run(job.cron, now).timestamp()})
    return list(wanted)


def pin_process_to_utc() -> None:
    """rq-scheduler reads cron expressions in the process's local time; make that UTC."""
    os.environ["TZ"] = "UTC"
    time.tzset()


def run_scheduler(interval: int = 30) -> None:
    """Register the periodic jobs and fire them when due, until told to stop.

    After a Redis outage the jobs are registered again, in case Redis came
    back empty.
    """
    pin_process_to_utc()
    warnings.filterwarnings("ignore", message="Version 0.22.0", category=FutureWarning)

    def schedule() -> None:
        scheduler = make_scheduler(interval)
        sync_periodic_jobs(scheduler)
        scheduler.run()

    keep_running(schedule, "scheduler")


def next_scheduled_run() -> datetime | None:
    """When rq-scheduler is due to fire the periodic calculation next; None when it is not registered.

    Reads the scheduler's sorted set directly, so the dashboard shows what
    the running scheduler will do, not what the cron expression says it
    should. Redis errors propagate: the caller decides how to show them.
    """
    scheduler = make_scheduler()
    scores = [scheduler.connection.zscore(scheduler.scheduled_jobs_key, job.id) for job in periodic_jobs()]
    due = [score for score in scores if score is not None]
    return datetime.fromtimestamp(min(due), tz=timezone.utc) if due else None
