"""Queries on user activity metrics: the API's list, and the dashboard's windows, status and history."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ..core.database import Database
from ..core.errors import ValidationError
from ..core.tables import user_activity_metrics
from ..core.windows import EPOCH, ceil_window, floor_window, last_closed_boundary
from ..core.validation import MAX_BIGINT
from .pagination import decode_cursor, encode_cursor, keyset_page


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
        if not (key.isascii() and key.isdigit()) or int(key) > MAX_BIGINT:
            raise ValidationError("is not a cursor returned by this API", field="cursor")
        return cls(moment, int(key))


@dataclass(frozen=True)
class StoredMetric:
    user_id: int
    window_start: datetime
    window_end: datetime
    event_count: int
    actions: dict[str, int]
    computed_at: datetime


@dataclass(frozen=True)
class StoredMetricPage:
    metrics: list[StoredMetric]
    next_cursor: MetricCursor | None


def list_metrics(database: Database, flt: MetricFilter, *, limit: int,
                 after: MetricCursor | None = None) -> StoredMetricPage:
    """One page of metrics ordered by window, then user."""
    c = user_activity_metrics.c
    statement = sa.select(c.user_id, c.window_start, c.window_end, c.event_count, c.actions, c.computed_at)
    if flt.user_id is not None:
        statement = statement.where(c.user_id == flt.user_id)
    if flt.start is not None:
        statement = statement.where(c.window_start >= flt.start)
    if flt.end is not None:
        statement = statement.where(c.window_start < flt.end)
    rows, last = keyset_page(database, statement, (c.window_start, c.user_id),
                             (after.window_start, after.user_id) if after else None, limit)
    metrics = [StoredMetric(*row) for row in rows]
    next_cursor = MetricCursor(last.window_start, last.user_id) if last else None
    return StoredMetricPage(metrics, next_cursor)


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


# `user_id` NULL sums every user; with one, the metrics' primary key (user_id, window_start) serves it.
_WINDOW_TOTALS = sa.text("""
WITH slots AS (
    SELECT generate_series(CAST(:first AS timestamptz), CAST(:last AS timestamptz) - :size, :size) AS window_start
), picked AS (
    SELECT window_start, event_count, actions FROM user_activity_metrics
    WHERE window_start >= :first AND window_start < :last AND (CAST(:user_id AS bigint) IS NULL OR user_id = :user_id)
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
       coalesce(a.actions, '{}'::jsonb),
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
""")


def window_totals(database: Database, first: datetime, last: datetime, size: timedelta, closed: datetime,
                  user_id: int | None = None) -> list[WindowTotal]:
    """Every window from `first` up to `last` (aligned, exclusive), oldest first, empty ones included.

    `closed` is the end of the newest closed window (see `last_closed_boundary`).
    Sums run in PostgreSQL, so a window with many users costs one row here.
    """
    params: dict[str, Any] = {"first": first, "last": last, "size": size, "closed": closed, "user_id": user_id}
    with database.read() as connection:
        rows = connection.execute(_WINDOW_TOTALS, params).all()
    return [WindowTotal(start, end, users, int(events), dict(actions), state)
            for start, end, users, events, actions, state in rows]


# The windows not closed yet, counted live from the events index in one pass: GROUPING SETS gives
# each window's totals (events, distinct users) and its per-action counts from the same scan.
# `user_id` NULL counts every user, read through ix_events_time; one user's events are read through the
# primary key. psycopg prepares the two apart (a NULL and a number are parameters of different types), and
# since a generic plan cannot use the primary key for `$n IS NULL OR user_id = $n`, PostgreSQL goes on
# planning the one-user case per call.
_OPEN_WINDOWS = sa.text("""
WITH slots AS (
    SELECT generate_series(CAST(:first AS timestamptz), CAST(:last AS timestamptz) - :size, :size) AS window_start
), counted AS (
    SELECT window_start, action, count(*) AS n, count(DISTINCT user_id) AS users, GROUPING(action) AS whole
    FROM (SELECT date_bin(:size, occurred_at, :origin) AS window_start, user_id, action
          FROM events
          WHERE occurred_at >= :first AND occurred_at < :last
            AND (CAST(:user_id AS bigint) IS NULL OR user_id = :user_id)) AS e
    GROUP BY GROUPING SETS ((window_start, action), (window_start))
)
SELECT s.window_start, s.window_start + :size,
       coalesce(max(c.users) FILTER (WHERE c.whole = 1), 0),
       coalesce(max(c.n) FILTER (WHERE c.whole = 1), 0),
       coalesce(jsonb_object_agg(c.action, c.n) FILTER (WHERE c.whole = 0), '{}'::jsonb)
FROM slots s LEFT JOIN counted c USING (window_start)
GROUP BY s.window_start
ORDER BY s.window_start
""")


def open_windows(database: Database, now: datetime, size: timedelta, settle: timedelta,
                 user_id: int | None = None, start: datetime | None = None,
                 end: datetime | None = None) -> list[WindowTotal]:
    """The windows still open at `now` (usually one; two for `settle` after a boundary), counted so far.

    Not final and never stored: the numbers grow until the window closes and a
    run counts it for good. Only windows whose start lies in `[start, end)`
    (when given) are included, as for the stored metrics.
    """
    first = last_closed_boundary(now, size, settle)
    last = floor_window(now, size) + size
    if start is not None:
        first = max(first, ceil_window(start, size))
    if end is not None:
        last = min(last, ceil_window(end, size))
    if first >= last:
        return []
    params: dict[str, Any] = {"first": first, "last": last, "size": size, "origin": EPOCH, "user_id": user_id}
    with database.read() as connection:
        rows = connection.execute(_OPEN_WINDOWS, params).all()
    return [WindowTotal(window_start, window_end, users, int(events), dict(actions), "open")
            for window_start, window_end, users, events, actions in rows]


def latest_metric_window(database: Database, user_id: int | None = None,
                         since: datetime | None = None) -> datetime | None:
    """Start of the newest window holding metrics (for one user, starting at or after `since`), if any."""
    c = user_activity_metrics.c
    statement = sa.select(sa.func.max(c.window_start))
    if user_id is not None:
        statement = statement.where(c.user_id == user_id)
    if since is not None:
        statement = statement.where(c.window_start >= since)
    with database.read() as connection:
        return connection.execute(statement).scalar_one()


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


_RECENT_RUNS = sa.text("""
SELECT id, trigger, job_id, started_at, finished_at, status, first_window, last_window, windows, users, events, error
FROM calculation_runs
ORDER BY started_at DESC, id DESC
LIMIT :limit
""")


def recent_runs(database: Database, limit: int = 10) -> list[RunRecord]:
    """The latest calculation runs, newest first (served by the started_at index)."""
    with database.read() as connection:
        return [RunRecord(*row) for row in connection.execute(_RECENT_RUNS, {"limit": limit})]


_LAST_FINISHED_RUN = sa.text("""
SELECT id, trigger, job_id, started_at, finished_at, status, first_window, last_window, windows, users, events, error
FROM calculation_runs
WHERE status = 'finished'
ORDER BY started_at DESC, id DESC
LIMIT 1
""")


def last_finished_run(database: Database) -> RunRecord | None:
    """The newest run that finished, whatever it counted (nothing, when no closed window was pending)."""
    with database.read() as connection:
        row = connection.execute(_LAST_FINISHED_RUN).first()
    return RunRecord(*row) if row is not None else None
