"""The storage job: event partitions made ahead of time, then retention applied.

Run by rq-scheduler on `STORAGE_SCHEDULE` (hourly by default) and, for
retention alone, by `flask --app wsgi apply-retention [--dry-run]`. Both parts
are idempotent, so a run that fails or overlaps another leaves nothing the
next run cannot finish.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from ..core.database import Database
from ..core.logs import log_fields
from ..core.settings import Settings
from ..core.times import format_rfc3339
from ..extensions import database, now, settings
from ..services.partitions import create_partitions_ahead
from ..services.retention import RetentionPolicy, RetentionReport, apply_retention

log = logging.getLogger(__name__)

STORAGE_FUNC = "app.jobs.storage.maintain_storage_job"


def retention_policy(config: Settings) -> RetentionPolicy:
    return RetentionPolicy(config.events_retention_days, config.metrics_retention_days, config.window_size)


def report_fields(report: RetentionReport) -> dict[str, Any]:
    """A retention run as the CLI prints it and the job returns it."""
    return {
        "dry_run": report.dry_run,
        "events_before": format_rfc3339(report.events_before) if report.events_before else None,
        "partitions_dropped": [partition.name for partition in report.partitions],
        "keys_removed": report.keys_removed,
        "metrics_before": format_rfc3339(report.metrics_before) if report.metrics_before else None,
        "metrics_removed": report.metrics_removed,
    }


def maintain_storage(db: Database, config: Settings, now: datetime) -> dict[str, Any]:
    """Partitions ahead first (so a failing retention never stops them), then retention."""
    created = create_partitions_ahead(db, now, config.events_partitions_ahead_days)
    report = apply_retention(db, retention_policy(config), now)
    return {"partitions_created": [partition.name for partition in created], **report_fields(report)}


def maintain_storage_job() -> dict[str, Any]:
    """The periodic job: one log line with what it created, dropped and deleted."""
    db = database()
    began = time.monotonic()
    try:
        result = maintain_storage(db, settings(), now())
    except Exception as exc:
        log.error("storage job failed", extra=log_fields(error=type(exc).__name__,
                                                         duration_ms=int((time.monotonic() - began) * 1000)))
        raise
    log.info("storage job finished", extra=log_fields(
        partitions_created=len(result["partitions_created"]), partitions_dropped=len(result["partitions_dropped"]),
        keys_removed=result["keys_removed"], metrics_removed=result["metrics_removed"],
        duration_ms=int((time.monotonic() - began) * 1000)))
    return result
