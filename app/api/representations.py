"""The JSON shapes of the API: how events, metrics and jobs look on the wire.

The services return dataclasses; only the API decides field names and formats.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import url_for

from ..core.times import format_rfc3339
from ..jobs.calculations import JobInfo
from ..services.events import StoredEvent
from ..services.metrics import Metric, WindowTotal


def event_json(event: StoredEvent) -> dict[str, Any]:
    """Our names, and beside them the original service's `uuid` and `occured_at` (sic) with the same
    values, so the original's clients (its React page reads those two) work unchanged."""
    event_id = str(event.id)
    occurred_at = format_rfc3339(event.occurred_at)
    return {
        "id": event_id,
        "uuid": event_id,
        "user_id": event.user_id,
        "action": event.action,
        "metadata": event.metadata,
        "occurred_at": occurred_at,
        "occured_at": occurred_at,
        "received_at": format_rfc3339(event.received_at),
    }


def metric_json(metric: Metric) -> dict[str, Any]:
    """The original service's field names: `window_start_at`, `window_end_at`, `created_at`."""
    return {
        "user_id": metric.user_id,
        "event_count": metric.event_count,
        "window_start_at": format_rfc3339(metric.window_start),
        "window_end_at": format_rfc3339(metric.window_end),
        "created_at": format_rfc3339(metric.computed_at),
        "actions": metric.actions,
    }


def open_window_json(window: WindowTotal, now: datetime) -> dict[str, Any]:
    """A window still open, counted so far: `final` is false and `as_of` says when it was counted."""
    return {
        "window_start_at": format_rfc3339(window.window_start),
        "window_end_at": format_rfc3339(window.window_end),
        "event_count": window.events,
        "user_count": window.users,
        "actions": window.actions,
        "final": False,
        "as_of": format_rfc3339(now),
    }


def job_json(job: JobInfo) -> dict[str, Any]:
    def when(moment: Any) -> str | None:
        return format_rfc3339(moment) if moment else None

    return {
        "id": job.id,
        "status": job.status,
        "enqueued_at": when(job.enqueued_at),
        "started_at": when(job.started_at),
        "ended_at": when(job.ended_at),
        "params": job.params,
        "summary": job.result,
        "error": job.error,
        "progress": {"done": job.progress.done, "total": job.progress.total,
                     "window": when(job.progress.window)} if job.progress else None,
        "url": url_for("api.get_metrics_job", job_id=job.id, _external=False),
    }
