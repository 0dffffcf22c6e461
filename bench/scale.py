"""`make bench-scale`: the service at 20 million events over 64 day partitions, beside the same run's small table.

One run, one database of its own (`tracking_scale_<random>`, dropped at the end),
one gunicorn serving the service. In order:

1. empty table: POST /api/event and POST /api/events/batch, each round from an
   empty `events`;
2. one day: every partition is dropped and the hot day alone is loaded; the
   events lists (first and deep keyset page of the hot user's day, an action
   filter, a metadata filter) and one window's calculation are measured;
3. full size: the other days are loaded (20 million events, one partition a
   day, today's included), and every figure of 1 and 2 is measured again,
   with the EXPLAIN (ANALYZE, BUFFERS) plans of the service's own statements;
4. retention: a DELETE of a day's rows (rolled back) beside detaching and
   dropping the same partition; a late event for a day without partition;
5. span: the same events partitioned per day and per week, for the list's
   latency and single inserts (the measurement behind the daily span).

Writes `bench/RESULTS-scale.md`. Ratios compare figures of this one run.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from urllib.request import Request as UrlRequest, urlopen

import sqlalchemy as sa
from flask import Flask
from flask_migrate import upgrade

from app import create_app
from app.core.partitions import partition_of
from app.core.times import format_rfc3339, utcnow
from app.core.windows import EPOCH
from app.dev.fixtures import drop_namespace, throwaway_database
from app.extensions import close as close_app
from app.extensions import database, db, settings
from app.services.calculation import _UNSEEN, CalculationSettings, calculate_metrics
from app.services.events import Cursor, EventFilter, iter_events, list_events
from app.services.metrics import window_totals

from . import load
from .database import HOT_EVERY, captured_statements, explain
from .load import LoadGenerator, LoadResult, Request
from .report import machine_description
from .runner import batch_bodies, redis_version, single_event_bodies
from .scale_data import KEY_EVERY, ScaleDatabase, SeedShape, SpanFigures, compare_spans
from .servers import REPO_ROOT, Gunicorn, ServerSettings

HOT_USER = 1
LIST_LIMIT = 100
INGEST_TARGET = 0.8
LIST_P99_MS = 25.0
DROP_SECONDS = 1.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL")
                        or "postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    parser.add_argument("--events", type=int, default=20_000_000, help="events loaded in all")
    parser.add_argument("--days", type=int, default=64, help="days (one partition each) they spread over")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each measurement")
    parser.add_argument("--seconds", type=float, default=5, help="length of one HTTP measurement")
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--span-events", type=int, default=1_000_000,
                        help="events in each table of the daily-or-weekly comparison")
    parser.add_argument("--span-days", type=int, default=364)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--load-generator", choices=("auto", "wrk", "asyncio"), default="auto")
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "bench" / "RESULTS-scale.md")
    return parser.parse_args(argv)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


@dataclass(frozen=True)
class Figure:
    """One measured thing at the small size and at full size."""

    name: str
    small: str
    full: str
    ratio: float | None = None
    target: str = ""
    met: bool | None = None


class ScaleBench:
    """One run's servers, database and findings."""

    def __init__(self, args: argparse.Namespace, loadgen: LoadGenerator, data: ScaleDatabase, app: Flask,
                 service: Gunicorn) -> None:
        self.args = args
        self.loadgen = loadgen
        self.data = data
        self.app = app
        self.service = service
        today = partition_of(utcnow()).start
        self.days = [today - timedelta(days=i) for i in range(args.days - 1, -1, -1)]
        self.hot_day = today - timedelta(days=2)
        with app.app_context():
            self.window_size = settings().window_size
        self.window = self.hot_day + 3 * self.window_size  # a closed window in the middle of the hot day
        self.shape = SeedShape(users=args.users, hot_user=HOT_USER, events_per_day=args.events // args.days)
        self.small: dict[str, Any] = {}
        self.full: dict[str, Any] = {}
        self.figures: list[Figure] = []
        self.details: list[str] = []
        self.plans: list[tuple[str, str]] = []
        self.spans: list[SpanFigures] = []

    def log(self, message: str) -> None:
        print(f"bench-scale: {message}", flush=True)

    # measuring ---------------------------------------------------------------------------------------

    def http(self, requests: Sequence[Request], connections: int | None = None) -> LoadResult:
        result = self.loadgen.run(self.service.base_url, requests, connections=connections or self.args.connections,
                                  seconds=self.args.seconds)
        self.service.wait_idle()
        if result.errors > result.requests * 0.001:
            raise RuntimeError(f"{result.errors} of {result.requests} {requests[0].method} {requests[0].path} "
                               f"failed; see {self.service.log_path}")
        return result

    def rounds(self, requests: Sequence[Request], before: Callable[[], None] | None = None,
               connections: int | None = None) -> list[LoadResult]:
        if self.args.warmup > 0:
            self.loadgen.run(self.service.base_url, requests, connections=connections or self.args.connections,
                             seconds=self.args.warmup)
            self.service.wait_idle()
        results = []
        for _ in range(self.args.rounds):
            if before is not None:
                before()
            results.append(self.http(requests, connections))
        return results

    def ingestion(self, into: dict[str, Any], empty: bool) -> None:
        """Single events and batches; with `empty`, each round starts from an empty table."""
        truncate = (lambda: self.data.execute("TRUNCATE events, event_keys, metrics_windows")) if empty else None
        single = [Request("POST", "/api/event", body) for body in single_event_bodies()]
        batches = [Request("POST", "/api/events/batch", body) for body in batch_bodies(self.args.batch_size)]
        into["single"] = self.rounds(single, truncate)
        into["batch"] = self.rounds(batches, truncate)

    def list_paths(self) -> dict[str, str]:
        """The hot user's day, first and deep page; an action and a metadata filter over the same day."""
        day = {"from": format_rfc3339(self.hot_day), "till": format_rfc3339(self.hot_day + timedelta(days=1)),
               "limit": LIST_LIMIT}
        hot_events = self.data.scalar("SELECT count(*) FROM events WHERE user_id = %s AND occurred_at >= %s "
                                      "AND occurred_at < %s", (HOT_USER, self.hot_day, self.hot_day + timedelta(days=1)))
        offset = max(0, min(hot_events * 9 // 10, hot_events - LIST_LIMIT - 1))
        moment, key = self.data.execute("SELECT occurred_at, id FROM events WHERE user_id = %s AND occurred_at >= %s "
                                        "AND occurred_at < %s ORDER BY occurred_at, id OFFSET %s LIMIT 1",
                                        (HOT_USER, self.hot_day, self.hot_day + timedelta(days=1), offset))[0]
        return {
            "first": "/api/events?" + urlencode({"user_id": HOT_USER, **day}),
            "deep": "/api/events?" + urlencode({"user_id": HOT_USER, **day, "cursor": Cursor(moment, key).encode()}),
            "action": "/api/events?" + urlencode({"action": "signup", **day}),
            "meta": "/api/events?" + urlencode({"meta.page": "/p/7", **day}),
        }

    def reads(self, into: dict[str, Any]) -> None:
        latency = self.args.workers  # one request in flight per worker
        for name, path in self.list_paths().items():
            into[f"list {name}"] = self.rounds([Request("GET", path)], connections=latency)
        into["calculation"] = [self.calculation() for _ in range(self.args.rounds)]

    def calculation(self) -> float:
        """Seconds of calculate_metrics() for one window, recomputed from scratch."""
        self.data.execute("TRUNCATE user_activity_metrics, metrics_windows")
        with self.app.app_context():
            began = time.perf_counter()
            calculate_metrics(database(), CalculationSettings(window_size=self.window_size), start=self.window,
                              end=self.window + self.window_size, trigger="bench")
            return time.perf_counter() - began

    # phases ------------------------------------------------------------------------------------------

    def run(self) -> None:
        self.log("empty table: single events and batches")
        self.ingestion(self.small, empty=True)
        self.data.execute("TRUNCATE events, event_keys, metrics_windows, user_activity_metrics")
        self.data.drop_all_partitions()
        self.log(f"one day: loading {self.shape.events_per_day:,} events into {self.hot_day:%Y-%m-%d}")
        self.data.load_days([self.hot_day], self.shape, parallel=1)
        self.data.execute("ANALYZE events")
        self.reads(self.small)
        rest = [day for day in self.days if day != self.hot_day]
        self.log(f"full size: loading {len(rest)} more days of {self.shape.events_per_day:,} events")
        seconds = self.data.load_days(rest, self.shape)
        self.data.execute("ANALYZE events")
        total = self.data.scalar("SELECT count(*) FROM events")
        partitions = len(self.data.partitions())
        self.details.append(
            f"Loaded {total:,} events over {partitions} day partitions ({self.days[0]:%Y-%m-%d} to "
            f"{self.days[-1]:%Y-%m-%d}, today included) in {seconds:.0f} s: {self.shape.events_per_day:,} a day, "
            f"{self.args.users:,} users skewed towards a few very active ones, user {HOT_USER} with one event in "
            f"{HOT_EVERY}; one event in {KEY_EVERY} has a client id (a key in event_keys). Each day is loaded into "
            "a table of its own, indexed, vacuumed and attached.")
        self.full["events"], self.full["partitions"] = total, partitions
        self.log("full size: single events and batches")
        self.ingestion(self.full, empty=False)
        self.log("full size: lists and the calculation")
        self.reads(self.full)
        self.log("full size: plans")
        self.explain_all()
        self.log("retention: DELETE of a day beside dropping its partition; a late event for a missing day")
        self.retention()
        self.late_event()
        self.log(f"span: {self.args.span_events:,} events partitioned per day and per week")
        self.spans = compare_spans(self.data, events=self.args.span_events, days=self.args.span_days,
                                   start=self.days[-1] - timedelta(days=self.args.span_days),
                                   spans={"daily": timedelta(days=1), "weekly": timedelta(days=7)})
        self.summarise()

    def explain_all(self) -> None:
        """The service's own statements at full size, captured as it sends them, with their plans."""
        day_end = self.hot_day + timedelta(days=1)
        user_day = EventFilter(user_id=HOT_USER, start=self.hot_day, end=day_end)
        with self.app.app_context():
            db_ = database()
            self.plan("Events list: one user's day, first page", lambda: list_events(db_, user_day, limit=LIST_LIMIT))
            self.plan("Events list: an action over one day", lambda: list_events(
                db_, EventFilter(action="signup", start=self.hot_day, end=day_end), limit=LIST_LIMIT))
            self.plan("Events list: a metadata filter over one day", lambda: list_events(
                db_, EventFilter(metadata={"page": "/p/7"}, start=self.hot_day, end=day_end), limit=LIST_LIMIT))
            self.plan("Dashboard: newest events, no filter (all partitions)", lambda: list_events(
                db_, EventFilter(), limit=50, newest_first=True))
            self.plan("Export: one user's day (server-side cursor)", lambda: next(iter_events(db_, user_day), None))
            self.plan("Dashboard: window totals of the hot day (pending check probes events)", lambda: window_totals(
                db_, self.hot_day, day_end, self.window_size, day_end))
        self.data.execute("TRUNCATE user_activity_metrics, metrics_windows")
        with self.app.app_context(), captured_statements(db.engine) as seen:
            calculate_metrics(database(), CalculationSettings(window_size=self.window_size), start=self.window,
                              end=self.window + self.window_size, trigger="bench")
            statement, parameters = next((sql, params) for sql, params in seen if "per_action" in sql)
            self.plans.append(("Calculation: one window's statement", explain(
                db.engine, statement, parameters, ["TRUNCATE user_activity_metrics", "SET LOCAL jit = off"])))
            with db.engine.connect() as conn:
                rows = conn.execute(sa.text(f"EXPLAIN (ANALYZE, BUFFERS) {_UNSEEN.text}"), {
                    "size": self.window_size, "origin": EPOCH, "closed": self.days[-1]}).scalars().all()
                conn.rollback()
            self.plans.append(("Calculation: the pending windows (hops from window to window through the partitions)",
                               "\n".join(rows)))

    def plan(self, title: str, query: Callable[[], Any]) -> None:
        with captured_statements(db.engine) as seen:
            query()
        statement, parameters = seen[-1]
        self.plans.append((title, explain(db.engine, statement, parameters)))

    def retention(self) -> None:
        """The oldest day: its rows deleted (and rolled back), then its partition detached and dropped."""
        oldest = self.data.partitions()[0]
        keys = self.data.scalar("SELECT count(*) FROM event_keys WHERE occurred_at >= %s AND occurred_at < %s",
                                (oldest.start, oldest.end))
        began = time.perf_counter()
        self.data.execute("DELETE FROM event_keys WHERE occurred_at >= %s AND occurred_at < %s",
                          (oldest.start, oldest.end))
        keys_seconds = time.perf_counter() - began
        rows, deleted, dropped = self.data.drop_beside_delete(oldest)
        self.full["drop"] = (oldest, rows, deleted, dropped, keys, keys_seconds)

    def late_event(self) -> None:
        """A POST for a day that has no partition (it is made on the way) beside one for a day that has."""
        def post(moment: datetime) -> float:
            body = json.dumps({"user_id": 5, "action": "late", "occurred_at": format_rfc3339(moment)}).encode()
            request = UrlRequest(self.service.base_url + "/api/event", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
            began = time.perf_counter()
            with urlopen(request, timeout=30) as answer:
                answer.read()
            return (time.perf_counter() - began) * 1000

        base = self.days[0] - timedelta(days=200)  # older than any partition, within EVENT_MAX_AGE_DAYS
        missing = [post(base + timedelta(days=i, hours=12)) for i in range(10)]
        present = [post(base + timedelta(days=i, hours=13)) for i in range(10)]
        self.full["late"] = (median(missing), median(present))

    # the report ------------------------------------------------------------------------------------

    def summarise(self) -> None:
        size = self.args.batch_size

        def rate(results: list[LoadResult], scale: float = 1) -> float:
            return median([r.rate for r in results]) * scale

        def p99(results: list[LoadResult]) -> float:
            return median([r.p99_ms for r in results])

        events = f"{self.full['events']:,} events"
        for name, label, scale in (("single", "POST /api/event, requests/s", 1),
                                   ("batch", f"POST /api/events/batch ({size:,} each), events/s", size)):
            small, full = rate(self.small[name], scale), rate(self.full[name], scale)
            ratio = full / small if small else 0.0
            self.figures.append(Figure(label, f"{small:,.0f} (empty table)", f"{full:,.0f} ({events})", ratio,
                                       f"ratio >= {INGEST_TARGET}", ratio >= INGEST_TARGET))
        for name, label in (("first", "GET /api/events, one user's day, first page: p99"),
                            ("deep", "the same, deep keyset page (90% in): p99"),
                            ("action", "GET /api/events, an action over one day: p99"),
                            ("meta", "GET /api/events, meta.page over one day: p99")):
            small, full = p99(self.small[f"list {name}"]), p99(self.full[f"list {name}"])
            self.figures.append(Figure(label, f"{small:.1f} ms (one day)", f"{full:.1f} ms ({events})",
                                       full / small if small else None, f"p99 < {LIST_P99_MS:.0f} ms",
                                       full < LIST_P99_MS))
        small, full = median(self.small["calculation"]), median(self.full["calculation"])
        self.figures.append(Figure("calculate_metrics(), one window", f"{small * 1000:,.0f} ms (one day)",
                                   f"{full * 1000:,.0f} ms ({events})", full / small if small else None))
        oldest, rows, deleted, dropped, keys, keys_seconds = self.full["drop"]
        self.figures.append(Figure(f"Forget one day ({rows:,} events)", f"DELETE: {deleted:.2f} s",
                                   f"drop partition: {dropped:.3f} s", dropped / deleted if deleted else None,
                                   f"drop < {DROP_SECONDS:.0f} s", dropped < DROP_SECONDS))
        missing, present = self.full["late"]
        self.figures.append(Figure("POST /api/event for a day without partition (one request)",
                                   f"{present:.1f} ms (partition exists)", f"{missing:.1f} ms (made on the way)",
                                   missing / present if present else None))
        per_event = self.data.index_bytes_per_event(self.data.partitions()[-2])
        self.details += [
            "Per round, empty table: single " + ", ".join(f"{r.rate:,.0f}" for r in self.small["single"])
            + " req/s, batches " + ", ".join(f"{r.rate * size:,.0f}" for r in self.small["batch"]) + " events/s; "
            f"full size: single {', '.join(f'{r.rate:,.0f}' for r in self.full['single'])} req/s, batches "
            + ", ".join(f"{r.rate * size:,.0f}" for r in self.full["batch"]) + " events/s. At full size the writes go "
            "into today's partition, loaded with a day's events like every other.",
            "List p99 per round (ms), one day / full size: " + "; ".join(
                f"{name} {', '.join(f'{r.p99_ms:.1f}' for r in self.small[f'list {name}'])} / "
                f"{', '.join(f'{r.p99_ms:.1f}' for r in self.full[f'list {name}'])}"
                for name in ("first", "deep", "action", "meta")) + f". {self.args.workers} connections, one request "
            "in flight per web worker.",
            "Calculation per round (ms), one day / full size: "
            + ", ".join(f"{t * 1000:.0f}" for t in self.small["calculation"]) + " / "
            + ", ".join(f"{t * 1000:.0f}" for t in self.full["calculation"]) + ".",
            f"Retention of {oldest.name}: the DELETE (in a transaction rolled back afterwards) only marks its {rows:,} "
            "rows deleted; vacuum still has to clean the heap and every index of them. Detaching the partition "
            f"CONCURRENTLY and dropping it took {dropped:.3f} s, whatever it held. Deleting its {keys:,} client-id "
            f"keys from event_keys first (as retention does) took {keys_seconds:.2f} s.",
            f"A day's indexes weigh {per_event:.0f} bytes per event here: at 1,000 events/s (86.4 million a day) a "
            f"daily partition's indexes would take {per_event * 86.4e6 / 2**30:.1f} GiB, a weekly one's "
            f"{per_event * 86.4e6 * 7 / 2**30:.1f} GiB.",
        ]


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def markdown(bench: ScaleBench, args: argparse.Namespace, machine: list[str], command: str, minutes: float,
             loads: tuple[str, str], loadgen: str) -> str:
    rows = ["| Figure | Small table | Full size | Ratio | Target | Result |", "|---|---|---|---|---|---|"]
    for figure in bench.figures:
        verdict = {True: "met", False: "MISSED", None: ""}[figure.met]
        ratio = f"{figure.ratio:.2f}" if figure.ratio is not None else ""
        rows.append(f"| {figure.name} | {figure.small} | {figure.full} | {ratio} | {figure.target} | {verdict} |")
    spans = ["| Span | Partitions | One-day list page, p50 | p99 | Single INSERTs/s |", "|---|---|---|---|---|"]
    spans += [f"| {s.name} | {s.partitions} | {s.list_p50_ms:.2f} ms | {s.list_p99_ms:.2f} ms | {s.insert_rate:,.0f} |"
              for s in bench.spans]
    contended = float(loads[0].split()[0]) > 1.0 or float(loads[1].split()[0]) > 1.0
    parts = [
        "# Scale benchmark results",
        "",
        f"Written by `{command}` (what `make bench-scale` runs) in {minutes:.1f} minutes. Every figure beside its "
        "reference comes from this one run on this one machine.",
        "",
        "## Machine",
        "",
        *(f"- {line}" for line in machine),
        f"- Load average at the start: {loads[0]}; at the end: {loads[1]}"
        + (" — other work shared the machine's two cores during the run, so absolute figures are noisy "
           "(ratios less so)." if contended else "."),
        "",
        "## Settings",
        "",
        f"- {ServerSettings(args.workers, args.threads).describe()}; load generator: {loadgen}",
        f"- {args.rounds} rounds of {args.seconds:.0f} s per HTTP figure after {args.warmup:.0f} s of warm-up; "
        "medians of the rounds",
        "- Small table: ingestion into an empty `events` (each round truncates it); lists and calculation with the "
        "hot day alone loaded. Full size: every day loaded.",
        "",
        "## Figures",
        "",
        *rows,
        "",
        *(f"- {line}" for line in bench.details),
        "",
        "## Partition span: daily or weekly",
        "",
        f"{args.span_events:,} events over {args.span_days} days, in a table partitioned per day and in one partitioned "
        "per week (primary key and time index, as `events`). The list page is one user's day, run as the service "
        "runs it (a prepared statement, so PostgreSQL's choice of plan and its partition locking count); the "
        "inserts are single-row prepared INSERTs into the current partition, one connection.",
        "",
        *spans,
        "",
        "## Plans at full size",
        "",
        "Each plan is the service's own statement, captured as it sends it, run with its own parameters under "
        "`EXPLAIN (ANALYZE, BUFFERS)`. Pruning shows as the partitions a plan names (one day's, not all of them) "
        "or as `Subplans Removed`.",
        "",
    ]
    for title, plan in bench.plans:
        parts += [f"### {title}", "", "```", plan, "```", ""]
    return "\n".join(parts).rstrip() + "\n"


@contextmanager
def scale_database(server_url: str) -> Iterator[str]:
    with throwaway_database(server_url, "tracking_scale") as url:
        yield url


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop the server, drop the database
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    began = time.monotonic()
    start_load = load_average()
    loadgen = load.choose(args.load_generator)
    namespace = f"bench-scale-{uuid.uuid4().hex[:12]}"
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-scale-")))
        url = stack.enter_context(scale_database(args.database_url))
        stack.callback(drop_namespace, args.redis_url, namespace)
        print(f"bench-scale: database {url.rsplit('/', 1)[-1]}, {loadgen.describe(args.connections)}", flush=True)
        config = {"DATABASE_URL": url, "REDIS_URL": args.redis_url, "REDIS_NAMESPACE": namespace,
                  "DATABASE_POOL_SIZE": args.threads, "LOG_LEVEL": "WARNING", "RATE_LIMIT_INGEST": "1000000 per second",
                  "RATE_LIMIT_READ": "1000000 per second"}
        app = create_app(config)
        with app.app_context():
            upgrade()
        stack.callback(close_app, app)
        env = {**os.environ, **{key: str(value) for key, value in config.items()}}
        service = Gunicorn("service", "wsgi:app", env, ServerSettings(args.workers, args.threads), scratch)
        stack.callback(service.stop)
        service.start()
        data = ScaleDatabase(url)
        machine = machine_description(
            {name: str(data.scalar(f"SHOW {name}")) for name in
             ("server_version", "shared_buffers", "synchronous_commit", "work_mem", "max_parallel_workers_per_gather")},
            redis_version(args.redis_url))
        bench = ScaleBench(args, loadgen, data, app, service)
        bench.run()
        minutes = (time.monotonic() - began) / 60
        report = markdown(bench, args, machine, " ".join(["python -m bench.scale", *argv]), minutes,
                          (start_load, load_average()), loadgen.describe(args.connections))
    args.results.write_text(report)
    for figure in bench.figures:
        print(f"{figure.name}: {figure.small} | {figure.full} | "
              f"{'' if figure.ratio is None else f'{figure.ratio:.2f}'} {figure.target} "
              f"{ {True: 'met', False: 'MISSED', None: ''}[figure.met]}")
    print(f"bench-scale: wrote {args.results} ({(time.monotonic() - began) / 60:.1f} minutes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
