"""RQ job functions: thin adapters from a queued job to the service layer.

They run in a worker that has pushed an application context (see worker.py),
take the app's settings and database from it, and log one line per job.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from redis.exceptions import RedisError
from rq import get_current_job
from rq.job import Job
from rq.timeouts import JobTimeoutException

from ..core.logs import log_fields
from ..core.settings import Settings
from ..core.times import format_rfc3339, parse_rfc3339
from ..extensions import database, now, settings
from ..services.calculation import CalculationProgress, CalculationSettings, RunSummary, calculate_metrics
from .calculations import PROGRESS_META, progress_meta

log = logging.getLogger(__name__)


def calculation_settings(config: Settings) -> CalculationSettings:
    return CalculationSettings(window_size=config.window_size, settle=config.settle,
                               chunk_windows=config.metrics_chunk_windows,
                               events_retention_days=config.events_retention_days,
                               metrics_retention_days=config.metrics_retention_days)


def summary_fields(summary: RunSummary) -> dict[str, Any]:
    """A run's summary as the job's result: what the API's job status and the dashboard's widget show."""
    return {
        "run_id": summary.run_id,
        "windows": summary.windows,
        "users": summary.users,
        "events": summary.events,
        "rows_written": summary.rows_written,
        "rows_removed": summary.rows_removed,
        "from": format_rfc3339(summary.first_window) if summary.first_window else None,
        "till": format_rfc3339(summary.last_window_end) if summary.last_window_end else None,
        "duration_ms": summary.duration_ms,
    }


class ProgressRecorder:
    """Keeps a run's progress in its RQ job's meta, where the API and the dashboard read it.

    Saved when the whole percentage changes (at most 101 writes a run, however
    many windows, and each one visible however fast or slow the windows go).
    Progress is a courtesy: a Redis hiccup while saving it never fails the run.
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        self.saved_percent: int | None = None

    def __call__(self, progress: CalculationProgress) -> None:
        percent = progress.done * 100 // progress.total if progress.total else 100
        if percent != self.saved_percent:
            self.save(progress)
            self.saved_percent = percent

    def save(self, progress: CalculationProgress) -> None:
        self.job.meta[PROGRESS_META] = progress_meta(progress)
        try:
            self.job.save_meta()
        except RedisError as exc:
            log.warning("cannot save the job's progress: %s", exc.__class__.__name__)


def timeout_behind(exc: BaseException) -> JobTimeoutException | None:
    """The job timeout that caused `exc`, if one did.

    A timeout landing mid-statement reaches us wrapped by SQLAlchemy (a
    StatementError whose cause it is) or replaced by the error of cleaning up
    after it; re-raised as itself, RQ and the job's status call it a timeout.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, JobTimeoutException):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def calculate_metrics_job(start: str | None = None, end: str | None = None,
                          trigger: str = "manual") -> dict[str, Any]:
    """Run the calculation for the queued request and return its summary as the job result."""
    job = get_current_job()
    job_id = job.id if job else None
    db = database()
    log.info("job started", extra=log_fields(job_id=job_id, trigger=trigger, window_from=start, window_till=end))
    began = time.monotonic()
    progress = ProgressRecorder(job) if job else None
    try:
        summary = calculate_metrics(
            db, calculation_settings(settings()),
            now=now(),
            start=parse_rfc3339(start) if start else None,
            end=parse_rfc3339(end) if end else None,
            trigger=trigger,
            job_id=job_id,
            progress=progress,
        )
    except Exception as exc:
        timeout = timeout_behind(exc)
        log.error("job failed", extra=log_fields(job_id=job_id, trigger=trigger, window_from=start, window_till=end,
                                                 error=type(timeout or exc).__name__,
                                                 duration_ms=int((time.monotonic() - began) * 1000)))
        if timeout is not None:
            raise timeout from None
        raise
    if progress is not None:
        progress.save(CalculationProgress(summary.windows, summary.windows, None))
    result = summary_fields(summary)
    log.info("job finished", extra=log_fields(
        job_id=job_id, run_id=summary.run_id, trigger=trigger, window_from=result["from"],
        window_till=result["till"], windows=summary.windows, users=summary.users, events=summary.events,
        rows_written=summary.rows_written, rows_removed=summary.rows_removed, duration_ms=summary.duration_ms))
    return result
