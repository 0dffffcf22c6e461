"""Retention: forgetting events and metrics older than the configured limits.

Events go a whole day partition at a time: a partition is dropped once all of
it is older than `EVENTS_RETENTION_DAYS`, which costs the same whatever it
holds, where a `DELETE` of its rows would write every row again (and leave
the vacuum to do). The partition is detached `CONCURRENTLY` first, so
neither reads nor writes wait for the drop. The client-id keys of those
events are deleted first, so a kept event never lacks its key and a retry
of it is always recognised (a retry of a dropped one is refused as too old).

Metrics are kept unless `METRICS_RETENTION_DAYS` is set; then whole windows
older than it are deleted (a few rows per user and window). The calculation
never recomputes a window older than either limit (see
`oldest_computable_window`), so a recalculation cannot wipe the metrics of
events already dropped, nor bring back metrics already deleted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from ..core.database import Database
from ..core.partitions import PARENT, Partition, retention_floor
from ..core.windows import floor_window
from .partitions import attached_partitions

KEY_CHUNK = 10_000

_DELETE_KEYS = """
DELETE FROM event_keys WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM event_keys WHERE occurred_at < %(before)s LIMIT %(chunk)s))
"""


@dataclass(frozen=True)
class RetentionPolicy:
    """The limits in force, in days; None keeps everything."""

    events_days: int | None = None
    metrics_days: int | None = None
    window_size: timedelta = timedelta(hours=4)

    def events_before(self, now: datetime) -> datetime | None:
        """Events before this moment may be dropped: the start of the oldest partition kept."""
        return retention_floor(now, self.events_days) if self.events_days is not None else None

    def metrics_before(self, now: datetime) -> datetime | None:
        """Metrics of windows starting before this moment are deleted."""
        return floor_window(now - timedelta(days=self.metrics_days), self.window_size) \
            if self.metrics_days is not None else None


def oldest_computable_window(policy: RetentionPolicy, now: datetime) -> datetime | None:
    """The start of the oldest window the calculation may (re)compute, or None for no limit."""
    limits = [moment for moment in (policy.events_before(now), policy.metrics_before(now)) if moment is not None]
    return max(limits) if limits else None


@dataclass(frozen=True)
class RetentionReport:
    """What a retention run dropped and deleted, or with `dry_run` would have."""

    dry_run: bool
    events_before: datetime | None
    partitions: list[Partition] = field(default_factory=list)
    keys_removed: int = 0
    metrics_before: datetime | None = None
    metrics_removed: int = 0


def apply_retention(database: Database, policy: RetentionPolicy, now: datetime, *,
                    dry_run: bool = False) -> RetentionReport:
    """Drop the event partitions and delete the metrics beyond the limits (with `dry_run`, only count them)."""
    events_before = policy.events_before(now)
    metrics_before = policy.metrics_before(now)
    with database.write() as connection:
        expired = _expired_partitions(connection, events_before)
        if dry_run:
            keys = _count(connection, "SELECT count(*) FROM event_keys WHERE occurred_at < %s", events_before)
            metrics = _count(connection, "SELECT count(*) FROM user_activity_metrics WHERE window_start < %s",
                             metrics_before)
            return RetentionReport(True, events_before, expired, keys, metrics_before, metrics)
        metrics = _delete_metrics(connection, metrics_before)
        keys = _delete_keys(connection, events_before)
        for partition in expired:
            drop_partition(connection, partition)
    return RetentionReport(False, events_before, expired, keys, metrics_before, metrics)


def _expired_partitions(connection: psycopg.Connection[Any], before: datetime | None) -> list[Partition]:
    """Any partition a previous run left half-detached, then those wholly before `before`, oldest first.

    The half-detached one goes first: PostgreSQL refuses to detach another partition
    CONCURRENTLY while one is pending, whichever is older.
    """
    pending = attached_partitions(connection, detaching=True)
    if before is None:
        return pending
    return pending + [p for p in attached_partitions(connection) if p.end <= before]


def _count(connection: psycopg.Connection[Any], query: str, before: datetime | None) -> int:
    if before is None:
        return 0
    row = connection.execute(query, (before,)).fetchone()
    return int(row[0]) if row else 0


def _delete_metrics(connection: psycopg.Connection[Any], before: datetime | None) -> int:
    if before is None:
        return 0
    return connection.execute("DELETE FROM user_activity_metrics WHERE window_start < %s", (before,)).rowcount


def _delete_keys(connection: psycopg.Connection[Any], before: datetime | None) -> int:
    """The keys of events about to be dropped, in short transactions of KEY_CHUNK rows."""
    if before is None:
        return 0
    removed = 0
    while True:
        deleted = connection.execute(_DELETE_KEYS, {"before": before, "chunk": KEY_CHUNK}).rowcount
        removed += deleted
        if deleted < KEY_CHUNK:
            return removed


def drop_partition(connection: psycopg.Connection[Any], partition: Partition) -> None:
    """Detach without blocking readers or writers (finishing a detach an earlier run began), then drop.

    DETACH ... CONCURRENTLY runs outside a transaction block and waits for the
    queries that may still see the partition; `connection` is in autocommit mode.
    """
    table, parent = sql.Identifier(partition.name), sql.Identifier(PARENT)
    pending = {p.start for p in attached_partitions(connection, detaching=True)}
    attached = {p.start for p in attached_partitions(connection)}
    if partition.start in pending:
        connection.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {} FINALIZE").format(parent, table))
    elif partition.start in attached:
        connection.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {} CONCURRENTLY").format(parent, table))
    connection.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
