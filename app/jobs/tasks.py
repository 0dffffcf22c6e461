"""RQ job functions: thin adapters from a queued job to the service layer.

They run in a worker that has pushed an application context (see worker.py),
take the app's settings and database from it, and log one line per job.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from rq import get_current_job

from ..core.logs import log_fields
from ..core.settings import Settings
from ..core.times import format_rfc3339, parse_rfc3339
from ..extensions import database, now, settings
from ..services.calculation import CalculationSettings, CalculationSummary, calculate_metrics

log = logging.getLogger(__name__)


def calculation_settings(config: Settings) -> CalculationSettings:
    return CalculationSettings(window_size=config.window_size, settle=config.settle,
                               chunk_windows=config.metrics_chunk_windows)


def summary_fields(summary: CalculationSummary) -> dict[str, Any]:
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


def calculate_metrics_job(start: str | None = None, end: str | None = None,
                          trigger: str = "manual") -> dict[str, Any]:
    """Run the calculation for the queued request and return its summary as the job result."""
    job = get_current_job()
    job_id = job.id if job else None
    db = database()
    # The work horse is a fork of the worker; never reuse connections the parent may hold.
    db.primary.dispose(close=False)
    log.info("job started", extra=log_fields(job_id=job_id, trigger=trigger, window_from=start, window_till=end))
    began = time.monotonic()
    try:
        summary = calculate_metrics(
            db, calculation_settings(settings()),
            now=now(),
            start=parse_rfc3339(start) if start else None,
            end=parse_rfc3339(end) if end else None,
            trigger=trigger,
            job_id=job_id,
        )
    except Exception as exc:
        log.error("job failed", extra=log_fields(job_id=job_id, trigger=trigger, window_from=start, window_till=end,
                                                 error=type(exc).__name__,
                                                 duration_ms=int((time.monotonic() - began) * 1000)))
        raise
    result = summary_fields(summary)
    log.info("job finished", extra=log_fields(
        job_id=job_id, run_id=summary.run_id, trigger=trigger, window_from=result["from"],
        window_till=result["till"], windows=summary.windows, users=summary.users, events=summary.events,
        rows_written=summary.rows_written, rows_removed=summary.rows_removed, duration_ms=summary.duration_ms))
    return result
