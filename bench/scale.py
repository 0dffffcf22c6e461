"""`make bench-scale`: the service at 20 million events over 64 day partitions, beside the same run's small table.

One run, two databases of its own (`tracking_scale_<random>`, dropped at the
end), each served by the service's own server with the same settings: "full" holds 20
million events, one partition a day over 64 days (today's included); "small"
holds at most the one day the lists read. Each figure is measured on both in
interleaved rounds, so a busy moment on a shared machine lands on both sides:

1. ingestion: POST /api/event and POST /api/events/batch, into "small" emptied
   before each round and into "full";
2. reads: the events lists (first and deep keyset page of the hot user's day,
   an action filter, a metadata filter) and one window's calculation, with the
   same day loaded alone in "small";
3. plans: EXPLAIN (ANALYZE, BUFFERS) of the service's own statements on "full";
4. retention: a DELETE of a day's rows (rolled back) beside detaching and
   dropping the same partition; a late event for a day without partition;
5. span: the same events partitioned per day and per week, for the list and
   single inserts (the measurement behind the daily span).

Writes `bench/RESULTS-scale.md`. Ratios compare figures of this one run.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
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
from app.services.events import EventCursor, EventFilter, iter_events, list_events
from app.services.metrics import window_totals

from . import load
from .database import HOT_EVERY, BenchDatabase, captured_statements, explain
from .load import LoadGenerator, Request
from .report import ANALYSIS_HEADING, kept_analysis, machine_description
from .runner import HttpSample as Sample
from .runner import batch_bodies, median, redis_version, single_event_bodies
from .scale_data import KEY_EVERY, ScaleDatabase, SeedShape, SpanFigures, compare_spans
from .servers import REPO_ROOT, BenchServer, ServerSettings

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


def cpu(samples: Sequence[Sample], per: int = 1) -> str:
    """`web / PostgreSQL` CPU microseconds per request (or per `per` events), medians of the rounds."""
    known = [s.database_cpu_us for s in samples if s.database_cpu_us is not None]
    database = f"{median(known) / per:,.0f}" if known else "n/a"
    return f"{median([s.worker_cpu_us for s in samples]) / per:,.0f} / {database} us"


@dataclass(frozen=True)
class Figure:
    """One measured thing at the small size and at full size."""

    name: str
    small: str
    full: str
    ratio: float | None = None
    target: str = ""
    met: bool | None = None


@dataclass
class Side:
    """One database and the web server that serves it."""

    name: str
    data: ScaleDatabase
    backends: BenchDatabase
    app: Flask
    server: BenchServer


class ScaleBench:
    """One run's two sides and its findings."""

    def __init__(self, args: argparse.Namespace, loadgen: LoadGenerator, small: Side, full: Side) -> None:
        self.args = args
        self.loadgen = loadgen
        self.sides = {"small": small, "full": full}
        self.data = full.data
        self.app = full.app
        self.service = full.server
        today = partition_of(utcnow()).start
        self.days = [today - timedelta(days=i) for i in range(args.days - 1, -1, -1)]
        self.hot_day = today - timedelta(days=2)
        with full.app.app_context():
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

    def http(self, side: Side, requests: Sequence[Request], connections: int | None = None) -> Sample:
        server = side.server
        workers_before = server.workers_cpu_seconds()
        database_before = side.backends.backends_cpu_seconds(server.application_name)
        result = self.loadgen.run(server.base_url, requests, connections=connections or self.args.connections,
                                  seconds=self.args.seconds)
        server.wait_idle()
        if result.errors > result.requests * 0.001:
            raise RuntimeError(f"{result.errors} of {result.requests} {requests[0].method} {requests[0].path} "
                               f"failed; see {server.log_path}")
        database_after = side.backends.backends_cpu_seconds(server.application_name)
        per_request = 1e6 / max(result.requests, 1)
        database_us = (database_after - database_before) * per_request \
            if database_before is not None and database_after is not None else None
        return Sample(result, (server.workers_cpu_seconds() - workers_before) * per_request, database_us)

    def paired(self, name: str, requests: dict[str, Sequence[Request]], *, empty_small: bool = False,
               connections: int | None = None) -> None:
        """The same load on both sides, round by round, alternating which goes first."""
        for side_name, side in self.sides.items():
            if self.args.warmup > 0:
                self.loadgen.run(side.server.base_url, requests[side_name],
                                 connections=connections or self.args.connections, seconds=self.args.warmup)
                side.server.wait_idle()
        samples: dict[str, list[Sample]] = {"small": [], "full": []}
        for index in range(self.args.rounds):
            for side_name in (("small", "full") if index % 2 == 0 else ("full", "small")):
                side = self.sides[side_name]
                if side_name == "small" and empty_small:
                    side.data.execute("TRUNCATE events, event_keys, metrics_windows")
                samples[side_name].append(self.http(side, requests[side_name], connections))
        self.small[name], self.full[name] = samples["small"], samples["full"]

    def ingestion(self) -> None:
        """Single events and batches: "small" starts each round empty, "full" keeps its 20 million."""
        single = [Request("POST", "/api/event", body) for body in single_event_bodies()]
        batches = [Request("POST", "/api/events/batch", body) for body in batch_bodies(self.args.batch_size)]
        self.paired("single", {"small": single, "full": single}, empty_small=True)
        self.paired("batch", {"small": batches, "full": batches}, empty_small=True)

    def list_paths(self, data: ScaleDatabase) -> dict[str, str]:
        """The hot user's day, first and deep page; an action and a metadata filter over the same day."""
        day = {"from": format_rfc3339(self.hot_day), "till": format_rfc3339(self.hot_day + timedelta(days=1)),
               "limit": LIST_LIMIT}
        hot_events = data.scalar("SELECT count(*) FROM events WHERE user_id = %s AND occurred_at >= %s "
                                 "AND occurred_at < %s", (HOT_USER, self.hot_day, self.hot_day + timedelta(days=1)))
        offset = max(0, min(hot_events * 9 // 10, hot_events - LIST_LIMIT - 1))
        moment, key = data.execute("SELECT occurred_at, id FROM events WHERE user_id = %s AND occurred_at >= %s "
                                   "AND occurred_at < %s ORDER BY occurred_at, id OFFSET %s LIMIT 1",
                                   (HOT_USER, self.hot_day, self.hot_day + timedelta(days=1), offset))[0]
        return {
            "first": "/api/events?" + urlencode({"user_id": HOT_USER, **day}),
            "deep": "/api/events?" + urlencode({"user_id": HOT_USER, **day, "cursor": EventCursor(moment, key).encode()}),
            "action": "/api/events?" + urlencode({"action": "signup", **day}),
            "meta": "/api/events?" + urlencode({"meta.page": "/p/7", **day}),
        }

    def reads(self) -> None:
        """Each list on both sides (one request in flight per worker), then the calculation on both."""
        paths = {side_name: self.list_paths(side.data) for side_name, side in self.sides.items()}
        for name in paths["full"]:
            self.paired(f"list {name}", {side: [Request("GET", paths[side][name])] for side in self.sides},
                        connections=self.args.workers)
        times: dict[str, list[float]] = {"small": [], "full": []}
        for index in range(self.args.rounds):
            for side_name in (("small", "full") if index % 2 == 0 else ("full", "small")):
                times[side_name].append(self.calculation(self.sides[side_name]))
        self.small["calculation"], self.full["calculation"] = times["small"], times["full"]

    def calculation(self, side: Side) -> float:
        """Seconds of calculate_metrics() for one window, recomputed from scratch."""
        side.data.execute("TRUNCATE user_activity_metrics, metrics_windows")
        with side.app.app_context():
            began = time.perf_counter()
            calculate_metrics(database(), CalculationSettings(window_size=self.window_size), now=utcnow(),
                              start=self.window, end=self.window + self.window_size, trigger="bench")
            return time.perf_counter() - began

    # phases ------------------------------------------------------------------------------------------

    def run(self) -> None:
        small, full = self.sides["small"], self.sides["full"]
        full.data.drop_all_partitions()
        self.log(f"full: loading {len(self.days)} days of {self.shape.events_per_day:,} events")
        seconds = full.data.load_days(self.days, self.shape)
        full.data.settle()
        total = full.data.scalar("SELECT count(*) FROM events")
        partitions = len(full.data.partitions())
        self.details.append(
            f"Loaded {total:,} events over {partitions} day partitions ({self.days[0]:%Y-%m-%d} to "
            f"{self.days[-1]:%Y-%m-%d}, today included) in {seconds:.0f} s: {self.shape.events_per_day:,} a day, "
            f"{self.args.users:,} users skewed towards a few very active ones, user {HOT_USER} with one event in "
            f"{HOT_EVERY}; one event in {KEY_EVERY} has a client id (a key in event_keys). Each day is loaded into "
            "a table of its own, indexed, vacuumed and attached. The small side gets the same rows for its one day.")
        self.full["events"], self.full["partitions"] = total, partitions
        self.log("ingestion: single events and batches, empty table beside full size")
        self.ingestion()
        small.data.execute("TRUNCATE events, event_keys, metrics_windows, user_activity_metrics")
        small.data.drop_all_partitions()
        small.data.load_days([self.hot_day], self.shape, parallel=1)
        for side in (small, full):
            side.data.settle()
        self.log("reads: the lists and the calculation, one day beside full size")
        self.reads()
        self.log("plans at full size")
        self.explain_all()
        self.log("retention: DELETE of a day beside dropping its partition; a late event for a missing day")
        self.retention()
        self.late_event()
        self.log(f"span: {self.args.span_events:,} events partitioned per day and per week")
        self.spans = compare_spans(small.data, events=self.args.span_events, days=self.args.span_days,
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
            calculate_metrics(database(), CalculationSettings(window_size=self.window_size), now=utcnow(),
                              start=self.window, end=self.window + self.window_size, trigger="bench")
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

        def rate(samples: list[Sample], scale: float = 1) -> float:
            return median([s.rate for s in samples]) * scale

        def p99(samples: list[Sample]) -> float:
            return median([s.p99_ms for s in samples])

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
        missed = [figure.name for figure in self.figures if figure.met is False]
        if missed:
            self.details.append("Missed: " + "; ".join(missed) + ".")
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
            "CPU per request, web workers / PostgreSQL backends, small table then full size (medians of the "
            "rounds; steadier than latency on a shared machine): "
            f"single {cpu(self.small['single'])} then {cpu(self.full['single'])}; per batched event "
            f"{cpu(self.small['batch'], size)} then {cpu(self.full['batch'], size)}; "
            + "; ".join(f"list {name} {cpu(self.small[f'list {name}'])} then {cpu(self.full[f'list {name}'])}"
                        for name in ("first", "deep", "action", "meta")) + ".",
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
    spans = ["| Span | Partitions | One-day list page: PostgreSQL CPU | p50 | p99 | Single INSERT: PostgreSQL CPU "
             "| INSERTs/s |", "|---|---|---|---|---|---|---|"]
    spans += [f"| {s.name} | {s.partitions} | {s.list_cpu_us:,.0f} us | {s.list_p50_ms:.2f} ms | {s.list_p99_ms:.2f} ms "
              f"| {s.insert_cpu_us:,.0f} us | {s.insert_rate:,.0f} |" for s in bench.spans]
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
        f"- the service's server (granian with the front), {args.workers} workers x {args.threads} threads, no access log, the same settings "
        f"for both databases; load generator: {loadgen}",
        f"- {args.rounds} rounds of {args.seconds:.0f} s per HTTP figure after {args.warmup:.0f} s of warm-up; "
        "medians of the rounds",
        "- Two databases, each behind its own web server with the same settings: \"small\" (ingestion into an "
        "empty `events`, truncated before each round; lists and calculation with the hot day alone loaded) and "
        "\"full\" (every day loaded). The two take turns round by round, so other work on the machine falls on "
        "both.",
        "",
        "## Figures",
        "",
        *rows,
        "",
        *(f"- {line}" for line in bench.details),
        "",
        ANALYSIS_HEADING,
        "",
        kept_analysis(args.results),
        "",
        "## Partition span: daily or weekly",
        "",
        f"{args.span_events:,} events over {args.span_days} days, in a table partitioned per day and in one partitioned "
        "per week (primary key and time index, as `events`). The list page is one user's day, run as the service "
        "runs it (a prepared statement, so PostgreSQL's choice of plan and its partition locking count); the "
        "inserts are single-row prepared INSERTs into the current partition. One connection per table, the two "
        "taking turns for 3 rounds; CPU is the backend's own (from /proc) per statement, medians of the rounds.",
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
        stack.callback(drop_namespace, args.redis_url, namespace)
        sides = {}
        for name in ("small", "full"):
            url = stack.enter_context(scale_database(args.database_url))
            print(f"bench-scale: {name} database {url.rsplit('/', 1)[-1]}", flush=True)
            config = {"DATABASE_URL": url, "REDIS_URL": args.redis_url, "REDIS_NAMESPACE": f"{namespace}-{name}",
                      "DATABASE_POOL_SIZE": args.threads, "LOG_LEVEL": "WARNING",
                      "RATE_LIMIT_INGEST": "1000000 per second", "RATE_LIMIT_READ": "1000000 per second"}
            stack.callback(drop_namespace, args.redis_url, f"{namespace}-{name}")
            app = create_app(config)
            with app.app_context():
                upgrade()
            stack.callback(close_app, app)
            env = {**os.environ, **{key: str(value) for key, value in config.items()}}
            server = BenchServer(name, "wsgi:front", env, ServerSettings(args.workers, args.threads), scratch)
            backends = BenchDatabase(url)
            # its backends carry the server's name, so their CPU can be told apart
            server.env["DATABASE_URL"] = backends.url_for(server.application_name)
            stack.callback(server.stop)
            server.start()
            sides[name] = Side(name, ScaleDatabase(url), backends, app, server)
        print(f"bench-scale: {loadgen.describe(args.connections)}", flush=True)
        data = sides["full"].data
        machine = machine_description(
            {name: str(data.scalar(f"SHOW {name}")) for name in
             ("server_version", "shared_buffers", "synchronous_commit", "work_mem", "max_parallel_workers_per_gather")},
            redis_version(args.redis_url))
        bench = ScaleBench(args, loadgen, sides["small"], sides["full"])
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
