"""The API's answers, declared once: what events, metrics and jobs look like on the wire.

The services return dataclasses; only the API decides field names and formats.
Each answer is a msgspec Struct: the JSON provider encodes it in C straight
from its fields, and the OpenAPI document generates its response schemas
from the same declarations (`ANSWERS`).
"""
from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from flask import url_for
from msgspec import UNSET, Meta, UnsetType

from ..core.times import format_rfc3339
from ..jobs.calculations import JobInfo
from ..services.events import StoredEvent
from ..services.metrics import StoredMetric, WindowTotal

log = logging.getLogger(__name__)


class _Answer(msgspec.Struct, forbid_unknown_fields=True):
    """An answer's schema lists exactly its fields (`additionalProperties: false`)."""


UtcTimestamp = Annotated[str, Meta(description="RFC 3339 in UTC, to the microsecond.", examples=[
    "2025-10-23T13:07:00.000000Z"], extra_json_schema={"format": "date-time"})]
Count = Annotated[int, Meta(ge=0)]
ActionCounts = Annotated[dict[str, Annotated[int, Meta(ge=1)]], Meta(description="Events per action.")]
UserId = Annotated[int, Meta(ge=1)]
NextCursor = Annotated[str | None, Meta(description="Pass as `cursor` for the next page; null on the last.")]


class Event(_Answer):
    """A stored event, with the original service's names `uuid` and `occured_at` (sic) beside ours."""

    id: uuid.UUID
    uuid: Annotated[uuid.UUID, Meta(description="The original service's name for `id`; always the same value.")]
    user_id: UserId
    action: str
    metadata: dict[str, Any]
    occurred_at: UtcTimestamp
    occured_at: Annotated[UtcTimestamp, Meta(description="The original service's name (spelt so) for "
                                                      "`occurred_at`; always the same value.")]
    received_at: Annotated[UtcTimestamp, Meta(description="When the service stored it.")]


class EventPage(_Answer):
    """One keyset page of events, in time order."""

    events: list[Event]
    next_cursor: NextCursor


class BatchItem(_Answer):
    id: uuid.UUID
    uuid: Annotated[uuid.UUID, Meta(description="The original service's name for `id`.")]
    status: Literal["created", "duplicate"]


class BatchResult(_Answer):
    """What a batch stored: its events in request order, each new (`created`) or stored before (`duplicate`)."""

    created: Count
    duplicates: Count
    events: list[BatchItem]


class Metric(_Answer):
    """One user's final count in one closed window, under the original service's field names."""

    user_id: UserId
    event_count: Annotated[int, Meta(ge=1)]
    window_start_at: UtcTimestamp
    window_end_at: UtcTimestamp
    created_at: Annotated[UtcTimestamp, Meta(description="When it was computed.")]
    actions: ActionCounts


class OpenWindow(_Answer):
    """A window in progress, summed over the filter's users and counted from the events at `as_of`: not final
    (it grows until the window closes) and not stored (a run counts it for good once it has closed)."""

    window_start_at: UtcTimestamp
    window_end_at: UtcTimestamp
    event_count: Annotated[int, Meta(ge=0, description="Events so far.")]
    user_count: Annotated[int, Meta(ge=0, description="Distinct users so far.")]
    actions: ActionCounts
    final: Literal[False]
    as_of: Annotated[UtcTimestamp, Meta(description="When these were counted.")]


class MetricPage(_Answer):
    """One keyset page of metrics, by window then user; `open_windows` only when asked for."""

    metrics: list[Metric]
    next_cursor: NextCursor
    open_windows: Annotated[list[OpenWindow], Meta(
        description="Only with `include_open=true`: the windows not closed yet whose start lies in `[from, till)`, "
                    "oldest first (usually one; two in the settle time after a boundary). The same on every page."
    )] | UnsetType = UNSET


class CalculationSummary(_Answer):
    """What a finished calculation did."""

    run_id: int
    windows: Count
    users: Count
    events: Count
    rows_written: Count
    rows_removed: Count
    from_: UtcTimestamp | None = msgspec.field(name="from")
    till: UtcTimestamp | None
    duration_ms: Count


class JobProgress(_Answer):
    """How far the calculation is: `done` of `total` windows counted, and the start of the window being counted
    (null once all are done). Saved at every whole percent."""

    done: Count
    total: Count
    window: UtcTimestamp | None


class JobParams(_Answer):
    """What the job was queued with: the range (RFC 3339, or null for every pending window) and what triggered it."""

    start: str | None = None
    end: str | None = None
    trigger: str | None = None


class Job(_Answer):
    """A calculation job: queued, started, then finished (with its summary) or failed."""

    id: str
    status: Literal["created", "queued", "deferred", "scheduled", "started", "finished", "failed", "stopped",
                    "canceled"]
    enqueued_at: UtcTimestamp | None
    started_at: UtcTimestamp | None
    ended_at: UtcTimestamp | None
    params: JobParams
    summary: CalculationSummary | None
    error: Annotated[str | None, Meta(description="The last line of the error of a failed job.")]
    progress: Annotated[JobProgress | None, Meta(description="Null until the job starts counting windows.")]
    url: Annotated[str, Meta(description="Where to follow this job.")]


class JobEnvelope(_Answer):
    job: Job


ANSWERS = (Event, EventPage, BatchResult, MetricPage, JobEnvelope)


def event_view(event: StoredEvent) -> Event:
    """Our names, and beside them the original service's `uuid` and `occured_at` (sic) with the same
    values, so the original's clients (its React page reads those two) work unchanged."""
    occurred_at = format_rfc3339(event.occurred_at)
    return Event(id=event.id, uuid=event.id, user_id=event.user_id, action=event.action, metadata=event.metadata,
                 occurred_at=occurred_at, occured_at=occurred_at, received_at=format_rfc3339(event.received_at))


def metric_view(metric: StoredMetric) -> Metric:
    """The original service's field names: `window_start_at`, `window_end_at`, `created_at`."""
    return Metric(user_id=metric.user_id, event_count=metric.event_count,
                  window_start_at=format_rfc3339(metric.window_start), window_end_at=format_rfc3339(metric.window_end),
                  created_at=format_rfc3339(metric.computed_at), actions=metric.actions)


def open_window_view(window: WindowTotal, now: datetime) -> OpenWindow:
    """A window still open, counted so far: `final` is false and `as_of` says when it was counted."""
    return OpenWindow(window_start_at=format_rfc3339(window.window_start),
                      window_end_at=format_rfc3339(window.window_end), event_count=window.events,
                      user_count=window.users, actions=window.actions, final=False, as_of=format_rfc3339(now))


def _when(moment: datetime | None) -> str | None:
    return format_rfc3339(moment) if moment else None


def _summary(result: dict[str, Any] | None) -> CalculationSummary | None:
    """The summary the worker saved, as declared; one of another shape (saved by another version of the
    worker during a rolling deploy) is left out rather than passed on undeclared."""
    if result is None:
        return None
    try:
        return msgspec.convert(result, CalculationSummary)
    except msgspec.ValidationError as exc:
        log.warning("job summary not in the declared shape: %s", exc)
        return None


def job_view(job: JobInfo) -> JobEnvelope:
    """The job and where to follow it, with the params it was queued with and its summary once finished."""
    return JobEnvelope(job=Job(
        id=job.id, status=job.status, enqueued_at=_when(job.enqueued_at), started_at=_when(job.started_at),
        ended_at=_when(job.ended_at), params=msgspec.convert(job.params, JobParams), summary=_summary(job.result),
        error=job.error,
        progress=JobProgress(done=job.progress.done, total=job.progress.total,
                             window=_when(job.progress.window)) if job.progress else None,
        url=url_for("api.get_metrics_job", job_id=job.id, _external=False)))
