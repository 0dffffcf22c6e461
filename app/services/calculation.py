"""The metrics calculation: the command that brings per-user window counts up to date.

`calculate_metrics` brings every closed window up to date: windows never
computed (from the earliest event on) and windows a late event marked stale.
Each window is one set-based statement.

A run works in chunks of at most `chunk_windows` windows. Each chunk is one
transaction holding a PostgreSQL advisory lock, so no two runs ever compute
at once, and releasing it between chunks lets another run take its turn: a
backlog of thousands of stale windows never keeps the periodic run from the
window that just closed. Inside the lock a run picks its next chunk from the
ledger as it stands then, so a window another run has just computed is not
computed again.

A run in "every pending window" mode promises to compute every window pending
before its closed boundary, including windows marked stale while it runs: it
stops only when a chunk finds none left, and marks itself finished in that
same locked transaction. A later run of that mode therefore leaves those
windows to it while it is alive and starts at its boundary (normally at the
window that closed since). Whether a run is alive is a second, session-level
advisory lock each run holds on its id until it ends: a run marked `running`
whose lock is free has lost its process, and is recorded as `abandoned`.
"""
from __future__ import annotations

import contextlib
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from ..core.database import Database
from ..core.windows import EPOCH, ceil_window, floor_window, last_closed_boundary
from .retention import RetentionPolicy, oldest_computable_window

LOCK_NAME = "tracking:metrics-calculation"
RUN_LOCK_NAME = "tracking:calculation-run"


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
class RunSummary:
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


@dataclass(frozen=True)
class CalculationProgress:
    """How far a run is: `done` of `total` windows counted, `window` (its start) being counted now."""

    done: int
    total: int
    window: datetime | None


# Told before each window is counted, so a long catch-up can show how far it is.
ProgressCallback = Callable[[CalculationProgress], None]


@dataclass(frozen=True)
class ChunkCounts:
    """What computing one chunk of windows did."""

    events: int
    written: int
    removed: int


# Held for one chunk: released by the chunk's commit (or rollback).
_LOCK_CHUNK = sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))")
# Held by a run for its whole life on its own connection: the proof that it is alive. The
# two-key form is a lock space of its own, apart from the chunk lock's one key.
_HOLD_RUN = sa.text("SELECT pg_advisory_lock(hashtext(:run_lock), CAST(:run_id % 2147483648 AS integer))")
_RELEASE_RUN = sa.text("SELECT pg_advisory_unlock(hashtext(:run_lock), CAST(:run_id % 2147483648 AS integer))")

# Never-computed windows that hold events, found by hopping through the time index from one
# window with events to the next (a handful of index probes per window, however sparse the
# history). Planned once per run: a window can only become pending afterwards through a late
# event, which marks it stale in the ledger, and stale windows are read chunk by chunk.
_UNSEEN = sa.text("""
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
ORDER BY 1
""")
_STILL_UNSEEN = sa.text("""
SELECT start FROM unnest(CAST(:starts AS timestamptz[])) AS start
WHERE NOT EXISTS (
    SELECT 1 FROM metrics_windows w WHERE w.window_start = start AND w.computed_at IS NOT NULL AND NOT w.stale
)
""")
_STALE = sa.text("""
SELECT window_start FROM metrics_windows
WHERE stale AND window_end <= :closed AND (CAST(:floor AS timestamptz) IS NULL OR window_start >= :floor)
ORDER BY window_start
LIMIT :limit
""")
_MARK_COMPUTED = sa.text("""
INSERT INTO metrics_windows (window_start, window_end, computed_at, stale)
SELECT start, start + :size, now(), false
FROM unnest(CAST(:starts AS timestamptz[])) AS start
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

# Runs marked running whose process is gone: their run lock is free, so this transaction can take
# it. The CTE keeps the lock probes to running rows.
_ABANDON_DEAD_RUNS = sa.text("""
WITH running AS MATERIALIZED (
    SELECT id FROM calculation_runs WHERE status = 'running' AND id <> :me
)
UPDATE calculation_runs
SET status = 'abandoned', finished_at = clock_timestamp(), error = 'stopped before finishing (worker killed?)'
WHERE id IN (SELECT id FROM running
             WHERE pg_try_advisory_xact_lock(hashtext(:run_lock), CAST(id % 2147483648 AS integer)))
""")

# While a run is running, `last_window` is the end of the range it is bringing up to date and
# `first_window` the start of an explicit range (NULL: every pending window before the end).
_START_RUN = sa.text("""
INSERT INTO calculation_runs (trigger, job_id, started_at, status, first_window, last_window)
VALUES (:trigger, :job_id, clock_timestamp(), 'running', :first_window, :last_window) RETURNING id
""")

_COUNT_STALE = sa.text("""
SELECT count(*) FROM metrics_windows
WHERE stale AND window_end <= :closed AND NOT (window_start = ANY(:unseen))
  AND (CAST(:floor AS timestamptz) IS NULL OR window_start >= :floor)
""")

# Where the windows left to older, live runs of the "every pending window" mode end.
_CLAIMED_UNTIL = sa.text("""
SELECT max(last_window) FROM calculation_runs
WHERE status = 'running' AND id < :me AND first_window IS NULL
""")

_FINISH_RUN = sa.text("""
UPDATE calculation_runs
SET finished_at = clock_timestamp(), status = :status, first_window = :first_window, last_window = :last_window,
    windows = :windows, users = :users, events = :events, error = :error
WHERE id = :id
""")


class _Requested:
    """An explicit range: every closed window overlapping it is recomputed, done or not."""

    def __init__(self, starts: list[datetime]) -> None:
        self.starts = starts
        self.position = 0

    def size(self, conn: sa.Connection) -> int:
        return len(self.starts)

    def next_chunk(self, conn: sa.Connection, claimed_until: datetime | None, limit: int) -> list[datetime]:
        chunk = self.starts[self.position:self.position + limit]
        self.position += len(chunk)
        return chunk


class _Pending:
    """Every pending window before `closed`: never computed ones planned up front, stale ones as they come.

    Windows before `claimed_until` belong to an older live run and are left to it;
    they are considered again should it end first.
    """

    def __init__(self, unseen: list[datetime], closed: datetime, oldest: datetime | None) -> None:
        self.unseen = [start for start in unseen if oldest is None or start >= oldest]
        self.closed = closed
        self.oldest = oldest

    def size(self, conn: sa.Connection) -> int:
        """How many windows are pending now: the run's total for its progress (late events may add some)."""
        stale = conn.execute(_COUNT_STALE, {"closed": self.closed, "unseen": self.unseen,
                                            "floor": self.oldest}).scalar_one()
        return len(self.unseen) + stale

    def next_chunk(self, conn: sa.Connection, claimed_until: datetime | None, limit: int) -> list[datetime]:
        floor = max(filter(None, (claimed_until, self.oldest)), default=None)
        while True:
            stale = conn.execute(_STALE, {"closed": self.closed, "floor": floor,
                                          "limit": limit}).scalars().all()
            first = bisect_left(self.unseen, claimed_until) if claimed_until else 0
            candidates = self.unseen[first:first + limit]
            unseen = set(conn.execute(_STILL_UNSEEN, {"starts": candidates}).scalars()) if candidates else set()
            chunk = sorted(unseen.union(stale))[:limit]
            # forget the candidates another run has computed meanwhile, and those in this chunk
            taken = set(chunk)
            self.unseen[first:first + len(candidates)] = [c for c in candidates if c in unseen and c not in taken]
            if chunk or not candidates:
                return chunk


def _compute_chunk(conn: sa.Connection, starts: list[datetime], size: timedelta,
                   before_window: Callable[[datetime], None]) -> ChunkCounts:
    """Compute these windows and mark them computed, in the caller's transaction."""
    conn.execute(_NO_JIT)
    conn.execute(_MARK_COMPUTED, {"size": size, "starts": starts})
    events = written = removed = 0
    for window_start in starts:
        before_window(window_start)
        counts = conn.execute(_COMPUTE_WINDOW, {"start": window_start, "end": window_start + size}).one()
        events += counts.events
        written += counts.written
        removed += counts.removed
    return ChunkCounts(events, written, removed)


def _requested_windows(start: datetime, end: datetime, closed: datetime, size: timedelta) -> list[datetime]:
    """Windows overlapping `[start, end)`, limited to closed ones."""
    first = floor_window(start, size)
    last = min(ceil_window(end, size), closed)
    count = max(0, (last - first) // size)
    return [first + i * size for i in range(count)]


def _lock_chunk(conn: sa.Connection, run_id: int) -> datetime | None:
    """Take the chunk lock, record runs that died as abandoned, and say where older live runs' windows end."""
    conn.execute(_LOCK_CHUNK, {"name": LOCK_NAME})
    conn.execute(_ABANDON_DEAD_RUNS, {"me": run_id, "run_lock": RUN_LOCK_NAME})
    return conn.execute(_CLAIMED_UNTIL, {"me": run_id}).scalar_one()


def calculate_metrics(database: Database, settings: CalculationSettings, *, now: datetime,
                      start: datetime | None = None, end: datetime | None = None,
                      trigger: str = "manual", job_id: str | None = None,
                      progress: ProgressCallback | None = None) -> RunSummary:
    """Compute every closed window that is pending, or recompute those overlapping `[start, end)`.

    Runs on one connection, chunk by chunk; each chunk commits on its own,
    so a killed run leaves every window either fully computed and marked so,
    or untouched, and other runs get the lock between chunks. `progress`, when
    given, is called before each window (it must be quick: the chunk's
    transaction is open).
    """
    size = settings.window_size
    closed = last_closed_boundary(now, size, settings.settle)
    began = time.monotonic()
    # Windows older than this are left alone: their events may be dropped already, and
    # recounting them would wipe metrics that retention keeps.
    oldest = oldest_computable_window(settings.retention, now)
    with database.primary.connect() as conn:
        plan: _Requested | _Pending
        if start is not None and end is not None:
            plan = _Requested([window_start for window_start in _requested_windows(start, end, closed, size)
                               if oldest is None or window_start >= oldest])
            span = (start, end)
        else:
            plan = _Pending(list(conn.execute(_UNSEEN, {"size": size, "origin": EPOCH, "closed": closed}).scalars()),
                            closed, oldest)
            span = (None, closed)
        conn.execute(_LOCK_CHUNK, {"name": LOCK_NAME})
        run_id = conn.execute(_START_RUN, {"trigger": trigger, "job_id": job_id, "first_window": span[0],
                                           "last_window": span[1]}).scalar_one()
        conn.execute(_HOLD_RUN, {"run_lock": RUN_LOCK_NAME, "run_id": run_id})
        conn.execute(_ABANDON_DEAD_RUNS, {"me": run_id, "run_lock": RUN_LOCK_NAME})
        conn.commit()
        try:
            try:
                summary = _run(conn, plan, settings, run_id, began, progress)
            except Exception as exc:
                _record_failure(database, conn, run_id, exc)
                raise
        finally:
            if not conn.invalidated:
                try:
                    conn.execute(_RELEASE_RUN, {"run_lock": RUN_LOCK_NAME, "run_id": run_id})
                    conn.commit()
                except sa.exc.DBAPIError:
                    # An interrupted statement (a job timeout) can leave the connection unusable; the
                    # error in flight is the one to report, and discarding the session frees its locks.
                    conn.invalidate()
    return summary


def _record_failure(database: Database, conn: sa.Connection, run_id: int, exc: Exception) -> None:
    """Mark the run failed with `exc`, the error the caller will see whatever happens here.

    An interrupted statement (a job timeout landing at the wrong moment) can
    leave the connection busy with a result nobody reads; then the session is
    discarded, which frees its locks, and the failure is written on a fresh
    connection. If even that fails, the next run marks this one abandoned.
    """
    failed = {"id": run_id, "status": "failed", "first_window": None, "last_window": None,
              "windows": 0, "users": 0, "events": 0, "error": f"{type(exc).__name__}: {exc}"[:2000]}
    try:
        conn.rollback()
        conn.execute(_FINISH_RUN, failed)
        conn.commit()
        return
    except sa.exc.DBAPIError:
        conn.invalidate()
    with contextlib.suppress(sa.exc.DBAPIError), database.primary.begin() as fresh:
        fresh.execute(_FINISH_RUN, failed)


def _run(conn: sa.Connection, plan: _Requested | _Pending, settings: CalculationSettings, run_id: int,
         began: float, progress: ProgressCallback | None) -> RunSummary:
    """Compute the plan chunk by chunk, each under the lock, and record the outcome.

    The check that finds nothing left and the run's `finished` mark share one
    locked transaction, so a later run never leaves a window to a run that has
    already looked for the last time.
    """
    size = settings.window_size
    starts: list[datetime] = []
    events = written = removed = 0
    total = plan.size(conn) if progress is not None else 0
    counted = 0  # windows counted so far, for progress (a window made stale again counts again)

    def tell(window_start: datetime) -> None:
        nonlocal counted
        if progress is not None:
            progress(CalculationProgress(counted, max(total, counted + 1), window_start))
        counted += 1

    while True:
        claimed_until = _lock_chunk(conn, run_id)
        chunk = plan.next_chunk(conn, claimed_until, settings.chunk_windows)
        if not chunk:
            break
        counts = _compute_chunk(conn, chunk, size, tell)
        conn.commit()
        starts.extend(chunk)
        events, written, removed = events + counts.events, written + counts.written, removed + counts.removed
    # a window marked stale again after this run computed it was computed twice; count it once
    starts = sorted(set(starts))
    users = conn.execute(_DISTINCT_USERS, {"starts": starts}).scalar_one() if starts else 0
    summary = RunSummary(
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
