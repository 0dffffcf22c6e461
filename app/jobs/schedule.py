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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import crontab
from redis import Redis
from rq_scheduler import Scheduler

from ..core.settings import Settings
from .calculations import CALCULATE_FUNC
from .queue import CALCULATION_QUEUE, keep_running, namespaced, namespaced_id
from .storage import STORAGE_FUNC


@dataclass(frozen=True)
class PeriodicJob:
    namespace: str
    name: str
    func: str
    cron: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        definition = json.dumps([self.func, self.cron, self.kwargs], sort_keys=True)
        return namespaced_id(self.namespace,
                             f"periodic-{self.name}-{hashlib.sha1(definition.encode()).hexdigest()[:10]}")


def periodic_jobs(settings: Settings) -> list[PeriodicJob]:
    return [
        PeriodicJob(settings.redis_namespace, "calculate-metrics", CALCULATE_FUNC, settings.metrics_schedule,
                    {"trigger": "schedule"}),
        PeriodicJob(settings.redis_namespace, "maintain-storage", STORAGE_FUNC, settings.storage_schedule),
    ]


def next_run(cron: str, now: datetime) -> datetime:
    """The next time `cron` fires after `now`, reading the expression in UTC."""
    delay = crontab.CronTab(cron).next(now=now.astimezone(timezone.utc), default_utc=True)
    return now + timedelta(seconds=delay)


class AppScheduler(Scheduler):
    """rq-scheduler with its keys under the deployment's namespace."""

    def __init__(self, namespace: str, **kwargs: Any) -> None:
        super().__init__(queue_name=namespaced(namespace, CALCULATION_QUEUE), **kwargs)
        self.namespace = namespace
        self.scheduler_key = namespaced(namespace, "rq:scheduler")
        self.scheduler_lock_key = namespaced(namespace, "rq:scheduler_lock")
        self.scheduled_jobs_key = namespaced(namespace, "rq:scheduler:scheduled_jobs")
        self.redis_scheduler_namespace_prefix = namespaced(namespace, "rq:scheduler_instance:")


def make_scheduler(redis: Redis, settings: Settings, interval: int = 30) -> AppScheduler:
    return AppScheduler(settings.redis_namespace, connection=redis, interval=interval)


def sync_periodic_jobs(scheduler: AppScheduler, settings: Settings, now: datetime) -> list[str]:
    """Make the scheduled periodic jobs match `periodic_jobs()`, each first due after `now`; returns their ids."""
    wanted = {job.id: job for job in periodic_jobs(settings)}
    prefix = namespaced_id(settings.redis_namespace, "periodic-")
    for existing in scheduler.get_jobs():
        if existing.id.startswith(prefix) and existing.id not in wanted:
            scheduler.cancel(existing)
            existing.delete()
    for job_id, job in wanted.items():
        if job_id in scheduler:
            continue
        scheduler.cron(job.cron, func=job.func, kwargs=job.kwargs, id=job_id,
                       queue_name=namespaced(settings.redis_namespace, CALCULATION_QUEUE),
                       timeout=settings.metrics_job_timeout, result_ttl=settings.metrics_job_result_ttl,
                       description=f"periodic {job.name}")
        # rq-scheduler computes the first run in local time; set it from UTC explicitly.
        scheduler.connection.zadd(scheduler.scheduled_jobs_key, {job_id: next_run(job.cron, now).timestamp()})
    return list(wanted)


def pin_process_to_utc() -> None:
    """rq-scheduler reads cron expressions in the process's local time; make that UTC."""
    os.environ["TZ"] = "UTC"
    time.tzset()


def run_scheduler(redis: Redis, settings: Settings, clock: Callable[[], datetime], interval: int = 30) -> None:
    """Register the periodic jobs and fire them when due, until told to stop.

    After a Redis outage the jobs are registered again, in case Redis came
    back empty.
    """
    pin_process_to_utc()
    warnings.filterwarnings("ignore", message="Version 0.22.0", category=FutureWarning)

    def schedule() -> None:
        scheduler = make_scheduler(redis, settings, interval)
        sync_periodic_jobs(scheduler, settings, clock())
        scheduler.run()

    keep_running(schedule, "scheduler")


def next_scheduled_run(redis: Redis, settings: Settings) -> datetime | None:
    """When rq-scheduler is due to fire the periodic calculation next; None when it is not registered.

    Reads the scheduler's sorted set directly, so the dashboard shows what
    the running scheduler will do, not what the cron expression says it
    should. Redis errors propagate: the caller decides how to show them.
    """
    scheduler = make_scheduler(redis, settings)
    scores = [scheduler.connection.zscore(scheduler.scheduled_jobs_key, job.id) for job in periodic_jobs(settings)
              if job.func == CALCULATE_FUNC]
    due = [score for score in scores if score is not None]
    return datetime.fromtimestamp(min(due), tz=timezone.utc) if due else None
