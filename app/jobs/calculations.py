"""Enqueueing the metrics calculation on demand and reporting on its job (RQ).

One request key per parameter set holds the id of the job serving it, so
pressing the button again while that job is queued or running returns the
same job instead of piling up work.
"""
from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from redis import Redis
from rq import Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from ..core.settings import Settings
from ..core.times import format_rfc3339, parse_rfc3339
from ..services.calculation import CalculationProgress
from .queue import calculation_queue, namespaced, namespaced_id

CALCULATE_FUNC = "app.jobs.tasks.calculate_metrics_job"
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
PROGRESS_META = "progress"
ACTIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED, JobStatus.CREATED}

_DELETE_IF_EQUAL = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class JobInfo:
    """A calculation job as its callers show it; `result` is the run's summary once it finished."""

    id: str
    status: str
    enqueued_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    params: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    progress: CalculationProgress | None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


def progress_meta(progress: CalculationProgress) -> dict[str, Any]:
    """A run's progress as the job keeps it in its meta (JSON-serialisable)."""
    return {"done": progress.done, "total": progress.total,
            "window": format_rfc3339(progress.window) if progress.window else None}


def _progress(meta: dict[str, Any]) -> CalculationProgress | None:
    saved = meta.get(PROGRESS_META)
    if not isinstance(saved, dict):
        return None
    window = saved.get("window")
    return CalculationProgress(int(saved["done"]), int(saved["total"]), parse_rfc3339(window) if window else None)


def _aware(moment: datetime | None) -> datetime | None:
    """RQ stores naive UTC datetimes; give them their zone back."""
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _info(job: Job) -> JobInfo:
    status = job.get_status(refresh=True) or JobStatus.CREATED
    result = error = None
    latest = job.latest_result()
    if status == JobStatus.FINISHED and latest is not None:
        result = latest.return_value
    elif status == JobStatus.FAILED and latest is not None:
        # the last line names the exception; SQLAlchemy adds a link to its docs after its own
        lines = [line for line in (latest.exc_string or "").strip().splitlines()
                 if line.strip() and not line.startswith("(Background on this error at")]
        error = lines[-1] if lines else "the job failed"
    return JobInfo(
        id=job.id,
        status=str(status.value if isinstance(status, JobStatus) else status),
        enqueued_at=_aware(job.enqueued_at),
        started_at=_aware(job.started_at),
        ended_at=_aware(job.ended_at),
        params={key: job.kwargs.get(key) for key in ("start", "end", "trigger")},
        result=result,
        error=error,
        progress=_progress(job.meta),
    )


def get_job(redis: Redis, namespace: str, job_id: str) -> JobInfo | None:
    """The job's status, or None when this deployment has no such job.

    None also for a job of another deployment sharing the Redis: its id is
    not under our namespace, or it was not queued on our queue (an id prefix
    alone could belong to a namespace such as `tracking-b` beside `tracking`);
    and for the storage job, which shares the queue but is no calculation.
    """
    if not JOB_ID.fullmatch(job_id) or not job_id.startswith(namespaced_id(namespace, "")):
        return None
    try:
        job = Job.fetch(job_id, connection=redis)
    except NoSuchJobError:
        return None
    if job.origin != calculation_queue(redis, namespace).name or job.func_name != CALCULATE_FUNC:
        return None  # the storage job shares the queue, but it is no calculation to follow
    return _info(job)


def enqueue_calculation(redis: Redis, settings: Settings, start: datetime | None = None,
                        end: datetime | None = None, trigger: str = "manual") -> tuple[JobInfo, bool]:
    """Queue a calculation, or return the job already queued or running for the same request."""
    kwargs = {
        "start": format_rfc3339(start) if start else None,
        "end": format_rfc3339(end) if end else None,
        "trigger": trigger,
    }
    digest = hashlib.sha1(f"{kwargs['start']}|{kwargs['end']}".encode()).hexdigest()[:16]
    namespace = settings.redis_namespace
    request_key = namespaced(namespace, f"metrics:request:{digest}")
    connection = redis
    while True:
        existing_id = connection.get(request_key)
        if existing_id is not None:
            existing = get_job(redis, namespace, existing_id.decode())
            if existing is not None and existing.active:
                return existing, False
            connection.eval(_DELETE_IF_EQUAL, 1, request_key, existing_id)
            continue
        job_id = namespaced_id(namespace, f"calculate-{uuid.uuid4().hex}")
        # The request key outlives the job's own timeout a little, then lapses by itself.
        if not connection.set(request_key, job_id, nx=True, ex=settings.metrics_job_timeout + 300):
            continue
        job = calculation_queue(redis, namespace).enqueue_call(
            CALCULATE_FUNC,
            kwargs=kwargs,
            job_id=job_id,
            timeout=settings.metrics_job_timeout,
            result_ttl=settings.metrics_job_result_ttl,
            failure_ttl=settings.metrics_job_failure_ttl,
            retry=Retry(max=settings.metrics_job_retries, interval=[10, 30, 60])
            if settings.metrics_job_retries else None,
            description=f"calculate metrics ({trigger})",
        )
        return _info(job), True
