"""Creating the time partitions of `events`: ahead of time, and on demand for an event that needs one.

A partition is created as a table of its own and then attached. `CREATE TABLE
... PARTITION OF` would take an ACCESS EXCLUSIVE lock on `events`, which
waits behind every running read (a long CSV export) while every insert queues
behind it; `ATTACH PARTITION` takes only SHARE UPDATE EXCLUSIVE, which
conflicts with neither reads nor writes. The indexes and the primary key
of `events` are built on the (empty) table as it is attached.

Creators serialise on an advisory lock and check the catalogue under it,
so two writers that both miss a partition create it once.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from ..core.database import Database
from ..core.partitions import PARENT, Partition, partitions_covering

LOCK_NAME = "tracking:events-partitions"
# How long a creator waits for a lock on `events` (another creator, a retention detach)
# before giving up: an error then is better than a queue of stalled inserts.
LOCK_TIMEOUT = "5s"

_PARTITIONS = """
SELECT c.relname,
       (regexp_match(b.bound, 'FROM \\(''([^'']+)''\\)'))[1]::timestamptz,
       (regexp_match(b.bound, 'TO \\(''([^'']+)''\\)'))[1]::timestamptz,
       i.inhdetachpending
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
CROSS JOIN LATERAL (SELECT pg_get_expr(c.relpartbound, c.oid) AS bound) AS b
WHERE i.inhparent = to_regclass(%(parent)s)
ORDER BY 2
"""


def _is_missing_partition(error: psycopg.Error) -> bool:
    message = error.diag.message_primary or ""
    return isinstance(error, psycopg.errors.CheckViolation) and message.startswith("no partition of relation")


def is_missing_partition(error: BaseException) -> bool:
    """Whether an insert failed because no partition accepts one of its rows."""
    return isinstance(error, psycopg.Error) and _is_missing_partition(error)


def attached_partitions(connection: psycopg.Connection[Any], parent: str = PARENT,
                        *, detaching: bool = False) -> list[Partition]:
    """The partitions attached to `parent`, oldest first (or only those left half-detached)."""
    rows = connection.execute(_PARTITIONS, {"parent": parent}).fetchall()
    return [Partition(start, end, parent) for name, start, end, pending in rows
            if start is not None and end is not None and bool(pending) == detaching]


def create_partitions(connection: psycopg.Connection[Any], wanted: Iterable[Partition]) -> list[Partition]:
    """Create and attach each wanted partition that does not exist yet; returns those created.

    Runs in one transaction on `connection` (an autocommit psycopg connection).
    """
    wanted = sorted(set(wanted))
    if not wanted:
        return []
    parent = wanted[0].parent
    created = []
    with connection.transaction():
        connection.execute("SELECT set_config('lock_timeout', %s, true)", (LOCK_TIMEOUT,))
        connection.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{LOCK_NAME}:{parent}",))
        existing = {(p.start, p.end) for p in attached_partitions(connection, parent)}
        for partition in wanted:
            if (partition.start, partition.end) in existing:
                continue
            table, parent_table = sql.Identifier(partition.name), sql.Identifier(parent)
            connection.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
                               .format(table, parent_table))
            connection.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})")
                               .format(parent_table, table, sql.Literal(partition.start),
                                       sql.Literal(partition.end)))
            created.append(partition)
    return created


def ensure_partitions(database: Database, start: datetime, end: datetime) -> list[Partition]:
    """Make sure partitions cover `[start, end)`; returns those it had to create."""
    with database.write() as connection:
        return create_partitions(connection, partitions_covering(start, end))


def create_partitions_ahead(database: Database, now: datetime, days_ahead: int) -> list[Partition]:
    """The periodic job's part: partitions from the current one to `days_ahead` days ahead.

    Events arrive for the current time (and up to a few minutes ahead), so with
    these in place the write path never waits for a partition to be created;
    older days get theirs on demand, from the first late event that needs one.
    """
    return ensure_partitions(database, now, now + timedelta(days=days_ahead))
