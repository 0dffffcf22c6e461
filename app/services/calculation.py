"""The metrics calculation: the command that brings per-user window counts up to date.

`calculate_metrics` brings every closed window up to date: windows never
computed (from the earliest event on) and windows a late event marked stale.
Each window is one set-based statement and each contiguous range of windows
one transaction; a PostgreSQL advisory lock held for the whole run serialises
concurrent runs, so the button, the schedule and a CLI call at once give the
result of one run.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from ..core.database import Database
from ..core.times import utcnow
from ..core.windows import EPOCH, Window, ceil_window, floor_window, last_closed_boundary
from .retention import RetentionPolicy, oldest_computable_window

LOCK_NAME = "tracking:metrics-calculation"


@dataclass(frozen=True)
class CalculationSettings:
    """The calculation's tuning, passed in by its callers (from `Settings`)."""

    window_size: timedelta
    settle: timedelta = timedelta(seconds=30)
    chunk_windows: int = 42
    events_retention_days: int | None = None
    metrics_retention_days: int | None = None

    @property
    def retention(self) -> RetentionPolicy:
        return RetentionPolicy(self.events_retention_days, self.metrics_retention_days, self.window_size)


@dataclass(frozen=True)
class CalculationSummary:
    """What one run did; returned to RQ as the job's result and shown in the history."""

    run_id: int
    windows: int
    users: int
    events: int
    rows_written: int
    rows_removed: int
    first_window: datetime | None
    last_window_end: datetime | None
    duration_ms: int


_LOCK = sa.text("SELECT pg_advisory_lock(hashtext(:name))")
_UNLOCK = sa.text("SELECT pg_advisory_unlock(hashtext(:name))")

# Windows that hold events but are not done, found by hopping through the time index from one
# window with events to the next (a handful of index probes per window, however sparse the
# history), plus every closed window a late event has marked stale.
_PENDING = sa.text("""
WITH RECURSIVE holding(window_start) AS (
    SELECT date_bin(:size, min(occurred_at), :origin) FROM events
    UNION ALL
    SELECT (SELECT date_bin(:size, min(e.occurred_at), :origin) FROM events e
            WHERE e.occurred_at >= h.window_start + :size)
    FROM holding h
    WHERE h.window_start + :size < :closed
)
SELECT window_start FROM holding
WHERE window_start + :size <= :closed
  AND NOT EXISTS (
    SELECT 1 FROM metrics_windows w
    WHERE w.window_start = holding.window_start AND w.computed_at IS NOT NULL AND NOT w.stale
)
UNION
SELECT window_start FROM metrics_windows WHERE stale AND window_end <= :closed
ORDER BY 1
""")
_MARK_COMPUTED = sa.text("""
INSERT INTO metrics_windows (window_start, window_end, computed_at, stale)
SELECT start, start + :size, now(), false
FROM generate_series(CAST(:start AS timestamptz), CAST(:end AS timestamptz) - :size, :size) AS start
ON CONFLICT (window_start) DO UPDATE
    SET window_end = excluded.window_end, computed_at = excluded.computed_at, stale = false
""")

# One window per statement: the window is a parameter, not a date_bin() of every
# row, so the aggregation hashes only (user, action) groups, and its memory stays
# that of one window however many windows a catch-up covers.
_COMPUTE_WINDOW = sa.text("""
WITH per_action AS (
    SELECT user_id, action, count(*) AS n
    FROM events
    WHERE occurred_at >= :start AND occurred_at < :end
    GROUP BY 1, 2
), fresh AS (
    -- one json text per user, parsed once, costs less than growing a jsonb pair by pair
    SELECT user_id, sum(n)::integer AS event_count, json_object_agg(action, n)::jsonb AS actions
    FROM per_action
    GROUP BY 1
), written AS (
    INSERT INTO user_activity_metrics AS m (user_id, window_start, window_end, event_count, actions, computed_at)
    SELECT user_id, :start, :end, event_count, actions, now() FROM fresh
    ON CONFLICT (user_id, window_start) DO UPDATE
        SET window_end = excluded.window_end, event_count = excluded.event_count,
            actions = excluded.actions, computed_at = excluded.computed_at
        WHERE (m.window_end, m.event_count, m.actions)
              IS DISTINCT FROM (excluded.window_end, excluded.event_count, excluded.actions)
    RETURNING 1
), removed AS (
    DELETE FROM user_activity_metrics m
    WHERE m.window_start = :start
      AND NOT EXISTS (SELECT 1 FROM fresh f WHERE f.user_id = m.user_id)
    RETURNING 1
)
SELECT (SELECT coalesce(sum(event_count), 0) FROM fresh) AS events,
       (SELECT count(*) FROM written) AS written,
       (SELECT count(*) FROM removed) AS removed
""")

# The aggregation's plan costs more than jit_above_cost, but compiling it takes
# longer than it saves on a window's scan; the setting ends with the transaction.
_NO_JIT = sa.text("SET LOCAL jit = off")

_DISTINCT_USERS = sa.text("""
SELECT count(DISTINCT user_id) FROM user_activity_metrics WHERE window_start = ANY(:starts)
""")

_ABANDON_RUNS = sa.text("""
UPDATE calculation_runs
SET status = 'abandoned', finished_at = clock_timestamp(), error = 'stopped before finishing (worker killed?)'
WHERE status = 'running'
""")

_START_RUN = sa.text("""
INSERT INTO calculation_runs (trigger, job_id, started_at, status)
VALUES (:trigger, :job_id, clock_timestamp(), 'running') RETURNING id
""")

_FINISH_RUN = sa.text("""
UPDATE calculation_runs
SET finished_at = clock_timestamp(), status = :status, first_window = :first_window, last_window = :last_window,
    windows = :windows, users = :users, events = :events, error = :error
WHERE id = :id
""")


def _contiguous_ranges(starts: list[datetime], size: timedelta, chunk: int) -> list[Window]:
    """Group sorted window starts into ranges of adjacent windows, at most `chunk` windows each."""
    ranges: list[Window] = []
    for start in starts:
        if ranges and ranges[-1].end == start and (start - ranges[-1].start) < size * chunk:
            ranges[-1] = Window(ranges[-1].start, start + size)
        else:
            ranges.append(Window(start, start + size))
    return ranges


def _window_starts(window_range: Window, size: timedelta) -> list[datetime]:
    return [window_range.start + i * size for i in range((window_range.end - window_range.start) // size)]


def _requested_windows(start: datetime, end: datetime, closed: datetime, size: timedelta) -> list[datetime]:
    """Windows overlapping `[start, end)`, limited to closed ones."""
    first = floor_window(start, size)
    last = min(ceil_window(end, size), closed)
    count = max(0, (last - first) // size)
    return [first + i * size for i in range(count)]


def calculate_metrics(database: Database, settings: CalculationSettings, *, now: datetime | None = None,
                      start: datetime | None = None, end: datetime | None = None,
                      trigger: str = "manual", job_id: str | None = None) -> CalculationSummary:
    """Compute every closed window that is pending, or recompute those overlapping `[start, end)`.

    Runs on one connection holding a session advisory lock; each range of
    windows commits on its own, so a killed run leaves every window either
    fully computed and marked so, or untouched.
    """
    now = now or utcnow()
    size = settings.window_size
    closed = last_closed_boundary(now, size, settings.settle)
    began = time.monotonic()
    with database.primary.connect() as conn:
        conn.execute(_LOCK, {"name": LOCK_NAME})
        try:
            # Holding the lock, any run still marked running has died without finishing.
            conn.execute(_ABANDON_RUNS)
            run_id = conn.execute(_START_RUN, {"trigger": trigger, "job_id": job_id}).scalar_one()
            conn.commit()
            try:
                oldest = oldest_computable_window(settings.retention, now)
                summary = _compute_pending(conn, settings, closed, oldest, start, end, run_id, began)
            except Exception as exc:
                conn.rollback()
                conn.execute(_FINISH_RUN, {
                    "id": run_id, "status": "failed", "first_window": None, "last_window": None,
                    "windows": 0, "users": 0, "events": 0, "error": f"{type(exc).__name__}: {exc}"[:2000]})
                conn.commit()
                raise
        finally:
            conn.execute(_UNLOCK, {"name": LOCK_NAME})
            conn.commit()
    return summary


def _compute_pending(conn: sa.Connection, settings: CalculationSettings, closed: datetime, oldest: datetime | None,
                     start: datetime | None, end: datetime | None, run_id: int, began: float) -> CalculationSummary:
    """Compute the planned windows range by range, committing each, and record the run's outcome.

    Windows older than `oldest` are left alone: their events may be dropped
    already, and recounting them would wipe metrics that retention keeps.
    """
    size = settings.window_size
    if start is not None and end is not None:
        starts = _requested_windows(start, end, closed, size)
    else:
        starts = list(conn.execute(_PENDING, {"size": size, "origin": EPOCH, "closed": closed}).scalars())
    if oldest is not None:
        starts = [window_start for window_start in starts if window_start >= oldest]
    conn.commit()
    events = written = removed = 0
    for window_range in _contiguous_ranges(starts, size, settings.chunk_windows):
        conn.execute(_NO_JIT)
        conn.execute(_MARK_COMPUTED, {"size": size, "start": window_range.start, "end": window_range.end})
        for window_start in _window_starts(window_range, size):
            counts = conn.execute(_COMPUTE_WINDOW, {"start": window_start, "end": window_start + size}).one()
            events += counts.events
            written += counts.written
            removed += counts.removed
        conn.commit()
    users = conn.execute(_DISTINCT_USERS, {"starts": starts}).scalar_one() if starts else 0
    summary = CalculationSummary(
        run_id=run_id, windows=len(starts), users=users, events=events, rows_written=written,
        rows_removed=removed, first_window=starts[0] if starts else None,
        last_window_end=starts[-1] + size if starts else None,
        duration_ms=int((time.monotonic() - began) * 1000),
    )
    conn.execute(_FINISH_RUN, {
        "id": run_id, "status": "finished", "first_window": summary.first_window,
        "last_window": summary.last_window_end, "windows": summary.windows, "users": users,
        "events": events, "error": None})
    conn.commit()
    return summary


