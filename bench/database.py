"""The benchmark's own database and the database-side measurements.

`BenchDatabase` works in `tracking_bench_<random>`, a throwaway database on the
server DATABASE_URL names (`app.dev.fixtures`), dropped (only it) at the end. The seed, the COPY and pgbench-style
references and the plain `INSERT ... SELECT` all run here, against the same
`events` table the service writes.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url

from app.core.partitions import partitions_covering
from app.services.partitions import create_partitions

from .servers import cpu_seconds

EVENT_COLUMNS = "id, user_id, action, metadata, occurred_at, received_at"
HOT_EVERY = 50  # one seeded event in HOT_EVERY belongs to the hot user
ACTIONS = ("page_view", "page_view", "page_view", "page_view", "click", "click", "scroll", "search",
           "signup", "purchase")

# Events spread evenly over one window, in time order as they would arrive; ids are
# UUIDv7-shaped (time first) like the service's. One event in HOT_EVERY is the hot user's;
# the others go to users 2..users+1, skewed towards low ids (a few very active users).
SEED_ROWS = """
INSERT INTO {table} (id, user_id, action, metadata, occurred_at, received_at)
SELECT (lpad(to_hex((extract(epoch FROM t) * 1000)::bigint), 12, '0') || '7' || lpad(to_hex(g %% 4096), 3, '0')
        || '8' || lpad(to_hex(g), 15, '0'))::uuid,
       CASE WHEN g %% %(hot_every)s = 0 THEN %(hot_user)s ELSE 2 + floor(power(random(), 2) * %(users)s)::bigint END,
       (%(actions)s::text[])[1 + floor(random() * cardinality(%(actions)s::text[]))::int],
       jsonb_build_object('page', '/p/' || (g %% 500), 'ref', CASE WHEN g %% 3 = 0 THEN 'search' ELSE 'direct' END),
       t, t + interval '2 seconds'
FROM generate_series(1, %(events)s) AS g,
     LATERAL (SELECT %(start)s::timestamptz + (g - 1) * %(step)s::interval AS t) AS times
"""
_SEED = SEED_ROWS.format(table="events")

# As migration 0003 creates them.
LIST_FILTER_INDEXES = {"ix_events_action_time": "(action, occurred_at, id)",
                       "ix_events_metadata": "USING gin (metadata jsonb_path_ops)"}

PLAIN_WINDOW_COUNT = ("INSERT INTO bench_window_counts (user_id, event_count) SELECT user_id, count(*) FROM events "
                      "WHERE occurred_at >= %s AND occurred_at < %s GROUP BY user_id")
# The same, with the work the per-action breakdown needs: a group per (user, action), folded into one JSON
# object per user. The fair reference for the calculation.
PLAIN_WINDOW_ACTIONS = ("INSERT INTO bench_window_counts (user_id, event_count, actions) "
                        "SELECT user_id, sum(n), jsonb_object_agg(action, n) FROM ("
                        "SELECT user_id, action, count(*) AS n FROM events "
                        "WHERE occurred_at >= %s AND occurred_at < %s GROUP BY user_id, action) AS per_action "
                        "GROUP BY user_id")

_PGBENCH_SCRIPT = """\\set uid random(1, 10000)
INSERT INTO events (id, user_id, action, metadata, occurred_at, received_at)
VALUES (gen_random_uuid(), :uid, 'page_view', '{"page": "/home"}', now(), now());
"""


@dataclass(frozen=True)
class CopyResult:
    rate: float
    database_cpu_us: float | None  # PostgreSQL's CPU per row, when it runs on this machine


@dataclass(frozen=True)
class SingleInsertResult:
    rate: float
    method: str


class BenchDatabase:
    """A database of the benchmark's own on the server of `server_url`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = make_url(url).database

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection[Any]]:
        with psycopg.connect(self.url, autocommit=True, options="-c timezone=UTC") as conn:
            yield conn

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        with self.connect() as conn:
            conn.execute(sql, params)

    def server_facts(self) -> dict[str, str]:
        with self.connect() as conn:
            facts = {name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
                     for name in ("server_version", "shared_buffers", "synchronous_commit", "work_mem",
                                  "max_parallel_workers_per_gather")}
        return facts

    def truncate_events(self) -> None:
        self.execute("TRUNCATE events, event_keys, metrics_windows, user_activity_metrics")

    def list_filter_indexes(self, present: bool) -> None:
        """Create or drop the indexes of the list's `action` and `meta.*` filters (instant on an empty table)."""
        with self.connect() as conn:
            for name, definition in LIST_FILTER_INDEXES.items():
                conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON events {definition}" if present
                             else f"DROP INDEX IF EXISTS {name}")

    def make_partitions(self, start: datetime, end: datetime) -> None:
        """The day partitions for rows this benchmark inserts with SQL of its own."""
        with self.connect() as conn:
            create_partitions(conn, partitions_covering(start, end))

    def seed(self, *, events: int, users: int, hot_user: int, start: datetime, size: timedelta) -> float:
        """Fill one window with `events` events, then VACUUM ANALYZE; return the seconds it took."""
        self.make_partitions(start, start + size)
        began = time.perf_counter()
        with self.connect() as conn:
            conn.execute("SELECT setseed(0.42)")
            conn.execute(_SEED, {"events": events, "users": users, "hot_user": hot_user, "hot_every": HOT_EVERY,
                                 "start": start, "step": size / events, "actions": list(ACTIONS)})
            conn.execute("VACUUM ANALYZE events")
        return time.perf_counter() - began

    def url_for(self, application_name: str) -> str:
        """The database URL with an application_name, so its backends can be told apart."""
        return make_url(self.url).update_query_dict({"application_name": application_name}).render_as_string(
            hide_password=False)

    def backends_cpu_seconds(self, application_name: str) -> float | None:
        """CPU time of the backends serving `application_name`, or None when the server is not local."""
        with self.connect() as conn:
            pids = [row[0] for row in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = "
                                                   "current_database() AND application_name = %s",
                                                   (application_name,))]
        if not pids or not all(Path(f"/proc/{pid}").exists() for pid in pids):
            return None
        return sum(cpu_seconds(pid) for pid in pids)

    def copy_rate(self, rows: list[tuple[Any, ...]]) -> CopyResult:
        """Rows per second of `COPY events FROM STDIN` through psycopg, one connection."""
        with self.connect() as conn:
            backend = conn.info.backend_pid
            local = Path(f"/proc/{backend}").exists()
            cpu_before = cpu_seconds(backend)
            began = time.perf_counter()
            with conn.transaction(), conn.cursor() as cursor:
                with cursor.copy(f"COPY events ({EVENT_COLUMNS}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            elapsed = time.perf_counter() - began
            database_cpu = (cpu_seconds(backend) - cpu_before) / len(rows) * 1e6 if local else None
        return CopyResult(len(rows) / elapsed, database_cpu)

    def single_insert_rate(self, *, seconds: float, clients: int, scratch: Path) -> SingleInsertResult:
        """Single-row INSERTs per second straight into PostgreSQL: pgbench, or a Python loop without it."""
        pgbench = shutil.which("pgbench")
        if pgbench is None:
            return self._python_insert_rate(seconds)
        script = scratch / "insert.sql"
        script.write_text(_PGBENCH_SCRIPT)
        threads = min(clients, 2)
        completed = subprocess.run(
            [pgbench, "--no-vacuum", "--protocol=prepared", f"--client={clients}", f"--jobs={threads}",
             f"--time={max(1, round(seconds))}", f"--file={script}", self.url],
            capture_output=True, text=True, timeout=seconds + 60)
        match = re.search(r"^tps = ([\d.]+)", completed.stdout, re.M)
        if completed.returncode != 0 or not match:
            raise RuntimeError(f"pgbench failed: {completed.stdout}{completed.stderr}")
        return SingleInsertResult(float(match[1]), f"pgbench, custom single-row INSERT script, "
                                                  f"{clients} clients, {threads} threads, prepared protocol")

    def _python_insert_rate(self, seconds: float) -> SingleInsertResult:
        sql = (f"INSERT INTO events ({EVENT_COLUMNS}) "
               "VALUES (gen_random_uuid(), %s, 'page_view', '{\"page\": \"/home\"}', now(), now())")
        count = 0
        with self.connect() as conn:
            began = time.perf_counter()
            while time.perf_counter() - began < seconds:
                conn.execute(sql, (1 + count % 10_000,), prepare=True)
                count += 1
            elapsed = time.perf_counter() - began
        return SingleInsertResult(count / elapsed, "Python loop over one connection (pgbench not installed)")

    def plain_window_count(self, statement: str, start: datetime, end: datetime) -> float:
        """Seconds of one plain `INSERT ... SELECT ... GROUP BY` (`PLAIN_WINDOW_*`) for one window."""
        with self.connect() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS bench_window_counts "
                         "(user_id bigint, event_count bigint, actions jsonb)")
            conn.execute("TRUNCATE bench_window_counts")
            began = time.perf_counter()
            conn.execute(statement, (start, end))
            return time.perf_counter() - began

    def explain(self, sql: str, params: Sequence[Any]) -> str:
        """`EXPLAIN (ANALYZE, BUFFERS)` of a statement, rolled back afterwards."""
        with self.connect() as conn, conn.transaction(force_rollback=True):
            return "\n".join(row[0] for row in conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params))

    def row_at(self, *, user_id: int, start: datetime, end: datetime, offset: int) -> tuple[datetime, uuid.UUID]:
        """(occurred_at, id) of one user's event at `offset` in list order: a deep keyset position."""
        with self.connect() as conn:
            row = conn.execute("SELECT occurred_at, id FROM events WHERE user_id = %s AND occurred_at >= %s "
                               "AND occurred_at < %s ORDER BY occurred_at, id OFFSET %s LIMIT 1",
                               (user_id, start, end, offset)).fetchone()
        if row is None:
            raise RuntimeError(f"user {user_id} has fewer than {offset + 1} events in the window")
        return row[0], row[1]


@contextmanager
def captured_statements(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """Record the SQL and parameters the service sends through `engine` while the block runs."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def explain(engine: Engine, statement: str, parameters: Any, prelude: Sequence[str] = ()) -> str:
    """`EXPLAIN (ANALYZE, BUFFERS)` of a captured statement, run with its own parameters and rolled back.

    `prelude` replays statements the service ran first in the same transaction (such as SET LOCAL).
    """
    with engine.connect() as conn:
        for sql in prelude:
            conn.exec_driver_sql(sql)
        rows = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters).scalars().all()
        conn.rollback()
    return "\n".join(rows)
