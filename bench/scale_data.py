"""The database side of `make bench-scale`: tens of millions of events, and what only the database measures.

Each day is loaded the way a bulk loader fills a partitioned table: into a
table of its own, indexed once, sorted, then attached (a CHECK constraint
matching its bounds spares ATTACH the scan). Two connections load days side
by side. Then: dropping a partition beside a DELETE of the same rows, and
the daily-or-weekly span comparison on tables of their own.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from app.core.partitions import SPAN, Partition, partition_of, partitions_covering
from app.services.partitions import attached_partitions, create_partitions
from app.services.retention import drop_partition

from .database import ACTIONS, HOT_EVERY, SEED_ROWS
from .servers import cpu_seconds

KEY_EVERY = 10  # one seeded event in KEY_EVERY carries a client id, so event_keys holds a key for it

# Events spread evenly over one day in time order, ids UUIDv7-shaped, as bench/database.py seeds a window.
_DAY_ROWS = SEED_ROWS

_INDEXES = (
    "ALTER TABLE {table} ADD PRIMARY KEY (user_id, occurred_at, id)",
    "CREATE INDEX ON {table} (occurred_at, id)",
    "CREATE INDEX ON {table} (action, occurred_at, id)",
    "CREATE INDEX ON {table} USING gin (metadata jsonb_path_ops)",
)


@dataclass(frozen=True)
class SeedShape:
    users: int
    hot_user: int
    events_per_day: int


class ScaleDatabase:
    """The benchmark's own database, reached with plain psycopg connections."""

    def __init__(self, url: str) -> None:
        self.url = url

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, autocommit=True, options="-c timezone=UTC")

    def execute(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            cursor = conn.execute(query, params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    def scalar(self, query: str, params: Any = None) -> Any:
        return self.execute(query, params)[0][0]

    def drop_all_partitions(self) -> None:
        """Forget every partition (the empty-table phase is over), so each day can be loaded whole."""
        with self.connect() as conn:
            for partition in attached_partitions(conn):
                drop_partition(conn, partition)

    def load_days(self, days: list[datetime], shape: SeedShape, parallel: int = 2) -> float:
        """Load and attach one partition per day; returns the seconds it took."""
        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            list(pool.map(lambda day: self._load_day(day, shape), days))
        return time.perf_counter() - began

    def _load_day(self, day: datetime, shape: SeedShape) -> None:
        partition = partition_of(day)
        table = sql.Identifier(partition.name)
        with self.connect() as conn:
            conn.execute("SET maintenance_work_mem = '256MB'")
            conn.execute("SET synchronous_commit = off")
            conn.execute(sql.SQL("CREATE TABLE {} (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
                         .format(table))
            # the same rows for a day whichever database loads it
            conn.execute("SELECT setseed(%s)", ((day.toordinal() % 997) / 997,))
            conn.execute(sql.SQL(_DAY_ROWS).format(table=table), {
                "events": shape.events_per_day, "users": shape.users, "hot_user": shape.hot_user,
                "hot_every": HOT_EVERY, "start": partition.start, "step": SPAN / shape.events_per_day,
                "actions": list(ACTIONS)})
            for statement in _INDEXES:
                conn.execute(sql.SQL(statement).format(table=table))
            conn.execute(sql.SQL("INSERT INTO event_keys (user_id, id, occurred_at) SELECT user_id, id, occurred_at "
                                 "FROM {} WHERE get_byte(uuid_send(id), 15) % {} = 0")
                         .format(table, sql.Literal(KEY_EVERY)))
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(table))
            bound = sql.Identifier(f"{partition.name}_bound")
            conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK (occurred_at >= {} AND occurred_at < {})")
                         .format(table, bound, sql.Literal(partition.start), sql.Literal(partition.end)))
            conn.execute(sql.SQL("ALTER TABLE events ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})")
                         .format(table, sql.Literal(partition.start), sql.Literal(partition.end)))
            conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(table, bound))

    def settle(self, timeout: float = 180.0) -> None:
        """Leave nothing for the background to do before measuring: statistics, a checkpoint, no autovacuum.

        Loading writes gigabytes; without this the measurements that follow
        share two cores with the checkpointer and autovacuum workers.
        """
        with self.connect() as conn:
            conn.execute("VACUUM ANALYZE event_keys")
            conn.execute("ANALYZE events")
            conn.execute("CHECKPOINT")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' "
                    "AND datname = current_database()").fetchone()[0]:  # type: ignore[index]
                time.sleep(1)

    def partitions(self) -> list[Partition]:
        with self.connect() as conn:
            return attached_partitions(conn)

    def drop_beside_delete(self, partition: Partition) -> tuple[int, float, float]:
        """(rows, seconds of a DELETE of the day's rows, rolled back, seconds of detaching and dropping it)."""
        with self.connect() as conn:
            with conn.transaction(force_rollback=True):
                began = time.perf_counter()
                rows = conn.execute("DELETE FROM events WHERE occurred_at >= %s AND occurred_at < %s",
                                    (partition.start, partition.end)).rowcount
                deleted = time.perf_counter() - began
            began = time.perf_counter()
            drop_partition(conn, partition)
            dropped = time.perf_counter() - began
        return rows, deleted, dropped

    def index_bytes_per_event(self, partition: Partition) -> float:
        """The indexes of one loaded day, per event: what a day's indexes weigh at a given rate."""
        with self.connect() as conn:
            size, rows = conn.execute(sql.SQL("SELECT pg_indexes_size(%s::regclass), (SELECT count(*) FROM {})")
                                      .format(sql.Identifier(partition.name)), (partition.name,)).fetchone()  # type: ignore[misc]
        return size / max(rows, 1)


@dataclass(frozen=True)
class SpanFigures:
    """One candidate span: its partition count and what the partition count costs, medians of the rounds."""

    name: str
    partitions: int
    list_p50_ms: float
    list_p99_ms: float
    list_cpu_us: float
    insert_rate: float
    insert_cpu_us: float


_SPAN_LIST = ("SELECT id, user_id, action, metadata, occurred_at, received_at FROM {table} "
              "WHERE user_id = %s AND occurred_at >= %s AND occurred_at < %s ORDER BY occurred_at, id LIMIT 101")
_SPAN_INSERT = ("INSERT INTO {table} (id, user_id, action, metadata, occurred_at) "
                "VALUES (gen_random_uuid(), %s, 'page_view', '{{}}', %s)")


def compare_spans(database: ScaleDatabase, *, events: int, start: datetime, days: int,
                  spans: dict[str, timedelta], rounds: int = 3, lists: int = 300,
                  inserts: int = 1000) -> list[SpanFigures]:
    """The same events in a table partitioned per span: a one-day list page and single inserts on each.

    Both run as the service runs them (prepared statements on one connection),
    so the plan PostgreSQL settles on, with its partition locking and pruning,
    is part of the cost. The spans take turns, round by round, and each
    statement's CPU is read from its backend's /proc entry: on a shared
    machine that moves far less than its latency.
    """
    end = start + timedelta(days=days)
    made = {name: _span_table(database, f"span_{name}", span, start, end, events) for name, span in spans.items()}
    day = start + timedelta(days=days // 2)
    measured: dict[str, list[tuple[list[float], float, float, float]]] = {name: [] for name in spans}
    with ExitStack() as stack:
        connections = {name: stack.enter_context(database.connect()) for name in spans}
        for index in range(rounds):
            for name in (list(spans) if index % 2 == 0 else list(reversed(spans))):
                conn, table = connections[name], f"span_{name}"
                query = _SPAN_LIST.format(table=table)
                latencies, list_cpu = _timed(conn, lambda: conn.execute(
                    query, (1, day, day + timedelta(days=1)), prepare=True).fetchall(), lists)
                insert = _SPAN_INSERT.format(table=table)
                began = time.perf_counter()
                _, insert_cpu = _timed(conn, lambda: conn.execute(insert, (1, end - timedelta(hours=1)), prepare=True),
                                       inserts)
                measured[name].append((latencies, list_cpu, inserts / (time.perf_counter() - began), insert_cpu))
    with database.connect() as conn:
        for name in spans:
            conn.execute(f"DROP TABLE span_{name}")
    figures = []
    for name, runs in measured.items():
        latencies = [value for run in runs for value in run[0]]
        figures.append(SpanFigures(name, made[name], statistics.median(latencies),
                                   statistics.quantiles(latencies, n=100)[98],
                                   statistics.median(run[1] for run in runs), statistics.median(run[2] for run in runs),
                                   statistics.median(run[3] for run in runs)))
    return figures


def _span_table(database: ScaleDatabase, table: str, span: timedelta, start: datetime, end: datetime,
                events: int) -> int:
    """A table like `events` partitioned per `span`, holding `events` events; returns its partition count."""
    with database.connect() as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS) "
                     "PARTITION BY RANGE (occurred_at)")
        conn.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (user_id, occurred_at, id)")
        conn.execute(f"CREATE INDEX ON {table} (occurred_at, id)")
        made = create_partitions(conn, [replace(p, parent=table) for p in partitions_covering(start, end, span)])
        conn.execute(sql.SQL(_DAY_ROWS).format(table=sql.Identifier(table)), {
            "events": events, "users": 10_000, "hot_user": 1, "hot_every": HOT_EVERY, "start": start,
            "step": (end - start) / events, "actions": list(ACTIONS)})
        conn.execute(f"VACUUM ANALYZE {table}")
    return len(made)


def _timed(conn: psycopg.Connection[Any], call: Callable[[], object], runs: int) -> tuple[list[float], float]:
    """Each run's latency (ms), and the backend's CPU per run (us), after warming the statement up."""
    for _ in range(10):
        call()  # past psycopg's prepare threshold and PostgreSQL's first custom plans
    backend = conn.info.backend_pid
    cpu_before = cpu_seconds(backend)
    latencies = []
    for _ in range(runs):
        began = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - began) * 1000)
    return latencies, (cpu_seconds(backend) - cpu_before) / runs * 1e6
