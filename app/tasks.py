"""RQ job functions: thin adapters from a queued job to the service layer.

They run in a worker that has pushed an application context (see worker.py),
so they read settings from `current_app` and never build an app themselves.
"""
from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from flask import Flask, current_app
from rq import get_current_job

from .extensions import db
from .log import log_fields
from .services.metrics import CalculationSettings, calculate_metrics
from .timeutil import parse_rfc3339

log = logging.getLogger(__name__)


def calculation_settings(app: Flask | None = None) -> CalculationSettings:
    config = (app or current_app).config
    return CalculationSettings(
        window_size=timedelta(hours=config["METRICS_WINDOW_HOURS"]),
        settle=timedelta(seconds=config["METRICS_SETTLE_SECONDS"]),
        chunk_windows=config["METRICS_CHUNK_WINDOWS"],
    )


def calculate_metrics_job(start: str | None = None, end: str | None = None,
                          trigger: str = "manual") -> dict[str, Any]:
    """Run the calculation for the queued request and return its summary as the job result."""
    job = get_current_job()
    job_id = job.id if job else None
    # The work horse is a fork of the worker; never reuse connections the parent may hold.
    db.engine.dispose(close=False)
    log.info("job started", extra=log_fields(job_id=job_id, trigger=trigger, window_from=start, window_till=end))
    began = time.monotonic()
    try:
        summary = calculate_metrics(
            calculation_settings(),
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
    result = summary.to_json()
    log.info("job finished", extra=log_fields(
        job_id=job_id, trigger=trigger, window_from=result["from"], window_till=result["till"],
        windows=summary.windows, rows_written=summary.rows_written, rows_removed=summary.rows_removed,
        duration_ms=summary.duration_ms))
    return result
