"""Commands and queries on user activity metrics.

`calculate_metrics` brings every closed window up to date: windows never
computed (from the earliest event on) and windows a late event marked stale.
Each window is one set-based statement and each contiguous range of windows
one transaction; a PostgreSQL advisory lock held for the whole run serialises
concurrent runs, so the button, the schedule and a CLI call at once give the
result of one run.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ..database import read_connection
from ..errors import ValidationError
from ..extensions import db
from ..log import log_fields
from ..models import UserActivityMetric
from ..timeutil import format_rfc3339, utcnow
from ..windows import EPOCH, Window, ceil_window, floor_window, last_closed_boundary
from .cursors import decode_cursor, encode_cursor, keyset_page

log = logging.getLogger(__name__)

LOCK_NAME = "tracking:metrics-calculation"


@dataclass(frozen=True)
class CalculationSettings:
    window_size: timedelta
    settle: timedelta = timedelta(seconds=30)
    chunk_windows: int = 42


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

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "windows": self.windows,
            "users": self.users,
            "events": self.events,
            "rows_written": self.rows_written,
            "rows_removed": self.rows_removed,
            "from": format_rfc3339(self.first_window) if self.first_window else None,
            "till": format_rfc3339(self.last_window_end) if self.last_window_end else None,
            "duration_ms": self.duration_ms,
        }


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


def calculate_metrics(settings: CalculationSettings, *, now: datetime | None = None,
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
    with db.engine.connect() as conn:
        conn.execute(_LOCK, {"name": LOCK_NAME})
        try:
            # Holding the lock, any run still marked running has died without finishing.
            conn.execute(_ABANDON_RUNS)
            run_id = conn.execute(_START_RUN, {"trigger": trigger, "job_id": job_id}).scalar_one()
            conn.commit()
            try:
                summary = _compute_pending(conn, settings, closed, start, end, run_id, began)
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
    log.info("metrics calculated", extra=log_fields(
        run_id=run_id, trigger=trigger, windows=summary.windows, window_from=summary.first_window,
        window_till=summary.last_window_end, users=summary.users, events=summary.events,
        rows_written=summary.rows_written, rows_removed=summary.rows_removed, duration_ms=summary.duration_ms))
    return summary


def _compute_pending(conn: sa.Connection, settings: CalculationSettings, closed: datetime,
                     start: datetime | None, end: datetime | None, run_id: int, began: float) -> CalculationSummary:
    """Compute the planned windows range by range, committing each, and record the run's outcome."""
    size = settings.window_size
    if start is not None and end is not None:
        starts = _requested_windows(start, end, closed, size)
    else:
        starts = list(conn.execute(_PENDING, {"size": size, "origin": EPOCH, "closed": closed}).scalars())
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


@dataclass(frozen=True)
class MetricFilter:
    """Which metrics to list: windows whose start lies in `[start, end)`, optionally for one user."""

    user_id: int | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class MetricCursor:
    window_start: datetime
    user_id: int

    def encode(self) -> str:
        return encode_cursor(self.window_start, self.user_id)

    @classmethod
    def decode(cls, token: str) -> MetricCursor:
        moment, key = decode_cursor(token)
        if not key.isdigit():
            raise ValidationError("is not a cursor returned by this API", field="cursor")
        return cls(moment, int(key))


@dataclass(frozen=True)
class Metric:
    user_id: int
    window_start: datetime
    window_end: datetime
    event_count: int
    actions: dict[str, int]
    computed_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "event_count": self.event_count,
            "window_start_at": format_rfc3339(self.window_start),
            "window_end_at": format_rfc3339(self.window_end),
            "created_at": format_rfc3339(self.computed_at),
            "actions": self.actions,
        }


@dataclass(frozen=True)
class MetricPage:
    metrics: list[Metric]
    next_cursor: MetricCursor | None


def list_metrics(flt: MetricFilter, *, limit: int, after: MetricCursor | None = None) -> MetricPage:
    """One page of metrics ordered by window, then user."""
    c = UserActivityMetric.__table__.c
    statement = sa.select(c.user_id, c.window_start, c.window_end, c.event_count, c.actions, c.computed_at)
    if flt.user_id is not None:
        statement = statement.where(c.user_id == flt.user_id)
    if flt.start is not None:
        statement = statement.where(c.window_start >= flt.start)
    if flt.end is not None:
        statement = statement.where(c.window_start < flt.end)
    rows, last = keyset_page(statement, (c.window_start, c.user_id),
                             (after.window_start, after.user_id) if after else None, limit)
    metrics = [Metric(*row) for row in rows]
    next_cursor = MetricCursor(last.window_start, last.user_id) if last else None
    return MetricPage(metrics, next_cursor)


@dataclass(frozen=True)
class WindowTotal:
    """One window summed over the users of a filter, for the dashboard's table and chart.

    `state` tells apart what the metrics table alone cannot: `counted` (a run
    has counted it, or it holds no event, so there is nothing to count),
    `pending` (closed and holding events, but no run has counted it since
    its last event arrived) and `open` (not closed yet, so never counted).
    """

    window_start: datetime
    window_end: datetime
    users: int
    events: int
    actions: dict[str, int]
    state: str


_WINDOW_TOTALS = """
WITH slots AS (
    SELECT generate_series(CAST(:first AS timestamptz), CAST(:last AS timestamptz) - :size, :size) AS window_start
), picked AS (
    SELECT window_start, event_count, actions FROM user_activity_metrics
    WHERE window_start >= :first AND window_start < :last {user_condition}
), totals AS (
    SELECT window_start, count(*) AS users, sum(event_count) AS events FROM picked GROUP BY 1
), per_action AS (
    SELECT window_start, jsonb_object_agg(key, n) AS actions
    FROM (SELECT p.window_start, a.key, sum(CAST(a.value AS bigint)) AS n
          FROM picked p CROSS JOIN LATERAL jsonb_each_text(p.actions) AS a
          GROUP BY 1, 2) AS counted
    GROUP BY 1
)
SELECT s.window_start, s.window_start + :size, coalesce(t.users, 0), coalesce(t.events, 0),
       coalesce(a.actions, '{{}}'::jsonb),
       CASE WHEN w.computed_at IS NOT NULL AND NOT w.stale THEN 'counted'
            WHEN s.window_start + :size > :closed THEN 'open'
            WHEN w.stale OR EXISTS (SELECT 1 FROM events e
                                    WHERE e.occurred_at >= s.window_start AND e.occurred_at < s.window_start + :size)
                 THEN 'pending'
            ELSE 'counted' END
FROM slots s
LEFT JOIN totals t USING (window_start)
LEFT JOIN per_action a USING (window_start)
LEFT JOIN metrics_windows w USING (window_start)
ORDER BY s.window_start
"""


def window_totals(first: datetime, last: datetime, size: timedelta, closed: datetime,
                  user_id: int | None = None) -> list[WindowTotal]:
    """Every window from `first` up to `last` (aligned, exclusive), oldest first, empty ones included.

    `closed` is the end of the newest closed window (see `last_closed_boundary`).
    Sums run in PostgreSQL, so a window with many users costs one row here.
    """
    user_condition = "AND user_id = :user_id" if user_id is not None else ""
    statement = sa.text(_WINDOW_TOTALS.format(user_condition=user_condition))
    params: dict[str, Any] = {"first": first, "last": last, "size": size, "closed": closed, "user_id": user_id}
    with read_connection() as connection:
        rows = connection.execute(statement, params).all()
    return [WindowTotal(start, end, users, int(events), dict(actions), state)
            for start, end, users, events, actions, state in rows]


def latest_metric_window(user_id: int | None = None, since: datetime | None = None) -> datetime | None:
    """Start of the newest window holding metrics (for one user, starting at or after `since`), if any."""
    c = UserActivityMetric.__table__.c
    statement = sa.select(sa.func.max(c.window_start))
    if user_id is not None:
        statement = statement.where(c.user_id == user_id)
    if since is not None:
        statement = statement.where(c.window_start >= since)
    with read_connection() as connection:
        return connection.execute(statement).scalar_one()


def last_computed_at() -> datetime | None:
    """When a run last finished computing any window."""
    with read_connection() as connection:
        return connection.execute(sa.text("SELECT max(computed_at) FROM metrics_windows")).scalar_one()


@dataclass(frozen=True)
class RunRecord:
    """One row of the calculation history."""

    id: int
    trigger: str
    job_id: str | None
    started_at: datetime
    finished_at: datetime | None
    status: str
    first_window: datetime | None
    last_window: datetime | None
    windows: int
    users: int
    events: int
    error: str | None

    @property
    def duration(self) -> timedelta | None:
        return self.finished_at - self.started_at if self.finished_at else None


def recent_runs(limit: int = 10) -> list[RunRecord]:
    """The latest calculation runs, newest first (served by the started_at index)."""
    statement = sa.text("""
        SELECT id, trigger, job_id, started_at, finished_at, status, first_window, last_window,
               windows, users, events, error
        FROM calculation_runs ORDER BY started_at DESC, id DESC LIMIT :limit
    """)
    with read_connection() as connection:
        return [RunRecord(*row) for row in connection.execute(statement, {"limit": limit})]
