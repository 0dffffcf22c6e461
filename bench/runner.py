"""`make bench`: the service beside its references, measured in one run on one machine.

The run creates a database of its own, migrates it and starts three servers
with the same workers and threads: the service on its own server
(`python -m app.serving`), the reference apps (`bench.reference_app`) on that
same server, and the reference apps on gunicorn gthread. Then, in order:

1. write path: the thin Flask + psycopg INSERT endpoint on both servers and
   the service's POST /api/event, interleaved round by round (each write run
   starts from an empty table), at 8 and at 64 connections; the bare Flask
   endpoint; slow clients (sockets that trickle their headers or bodies) while
   /healthz is probed; pgbench single-row INSERTs; psycopg COPY and
   POST /api/events/batch, interleaved; the batch body decoded in-process by
   msgspec (what the service uses) and by pydantic v2; each per-request hook timed;
2. seed: N events into one closed window, then VACUUM ANALYZE;
3. read path: GET /api/events first page and a deep keyset page of the hot
   user, interleaved, and their EXPLAIN (ANALYZE, BUFFERS) plans;
4. metrics: the plain INSERT ... SELECT and calculate_metrics() for the window,
   interleaved, and the plans of the metrics list;
5. memory: the RSS of each web worker before and after a mixed load;
6. profile: py-spy of one worker under POST /api/event.

Paired figures take the median of the per-round ratios, so a noisy moment on
a shared machine moves one round, not the verdict.
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
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from urllib.request import urlopen

import redis
from flask import Flask
from flask_migrate import upgrade
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from app.core.times import format_rfc3339, utcnow
from app.core.validation import InputBounds, parse_batch
from app.core.windows import window_of
from app.dev.fixtures import drop_namespace, throwaway_database
from app.extensions import database, db, settings
from app.services.calculation import CalculationSettings, calculate_metrics
from app.services.events import EventCursor, EventFilter, list_events, new_event_ids
from app.services.metrics import MetricFilter, list_metrics

from . import client, decoders, hooks, load, profile, staging
from .database import HOT_EVERY, PLAIN_WINDOW_ACTIONS, PLAIN_WINDOW_COUNT, BenchDatabase, CopyResult, captured_statements, explain
from .client import BATCH
from .load import LoadGenerator, LoadResult, Request
from .report import Results, Row, at_least, at_most, kept_analysis, machine_description, text_table
from .servers import REPO_ROOT, BenchServer, ServerSettings, rss_mib
from .slow_clients import probe_under_slow_clients

HOT_USER = 1
LIST_LIMIT = 100
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
SINGLE_TARGET = at_least(1.2)  # of the thin app on gunicorn gthread
SAME_SERVER_TARGET = at_least(0.95)  # of the thin app on the service's own server
SINGLE_P99_TARGET = at_most(1.5)
BATCH_TARGET = at_least(0.7)
CLIENT_TARGET = at_least(0.7)  # of raw batch posts from one process
HEALTHZ_P99_MS = 100.0  # under slow clients
SLOW_HEADERS = SLOW_BODIES = 40
DEEP_PAGE_TARGET = at_most(1.5)
METRICS_TARGET = at_most(1.2)
FIRST_PAGE_P99_MS = 25.0
MEMORY_TOLERANCE = 0.10
# Distinct bodies with client ids: more than one round of single events sends, so each is new.
CLIENT_ID_BODIES = 40_000


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
                        help="PostgreSQL server to create the benchmark database on (default: $DATABASE_URL)")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL)
    parser.add_argument("--events", type=int, default=1_000_000, help="events seeded into the window")
    parser.add_argument("--users", type=int, default=10_000, help="users besides the hot one")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of each paired measurement")
    parser.add_argument("--seconds", type=float, default=6, help="length of one HTTP measurement")
    parser.add_argument("--warmup", type=float, default=2, help="unrecorded load before each series")
    parser.add_argument("--connections", type=int, default=8, help="concurrent keep-alive connections")
    parser.add_argument("--many-connections", type=int, default=64,
                        help="connections of the second single-event series")
    parser.add_argument("--slow-seconds", type=float, default=10, help="length of the slow-client run")
    parser.add_argument("--latency-connections", type=int,
                        help="connections while measuring the events list's latency (default: one per worker)")
    parser.add_argument("--batch-size", type=int, default=1000, help="events per POST /api/events/batch")
    parser.add_argument("--copy-rows", type=int, default=300_000, help="rows per COPY measurement")
    parser.add_argument("--client-events", type=int, default=50_000,
                        help="events per round of the Python client and of its raw reference")
    parser.add_argument("--memory-seconds", type=float, default=60, help="length of the memory run")
    parser.add_argument("--profile-seconds", type=float, default=10, help="py-spy profile length; 0 skips it")
    parser.add_argument("--workers", type=int, default=2, help="web workers of every server")
    parser.add_argument("--threads", type=int, default=4, help="threads per web worker of every server")
    parser.add_argument("--load-generator", choices=("auto", "wrk", "asyncio"), default="auto")
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "bench" / "RESULTS.md",
                        help="where to write the Markdown report")
    return parser.parse_args(argv)


@dataclass(frozen=True)
class HttpSample:
    """One load run against one server, with the CPU its workers and its database backends spent per request."""

    result: LoadResult
    worker_cpu_us: float
    database_cpu_us: float | None

    @property
    def rate(self) -> float:
        return self.result.rate

    @property
    def p99_ms(self) -> float:
        return self.result.p99_ms


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def describe_http(samples: Sequence[HttpSample], unit: str = "req/s", scale: float = 1.0) -> str:
    rate = median([s.rate for s in samples]) * scale
    p50 = median([s.result.p50_ms for s in samples])
    p99 = median([s.result.p99_ms for s in samples])
    return f"{rate:,.0f} {unit} (p50 {p50:.1f} ms, p99 {p99:.1f} ms)"


def cpu_split(samples: Sequence[HttpSample], per: int = 1, digits: int = 0) -> str:
    """`worker / database` CPU microseconds per request (or per `per` events), medians of the rounds."""
    worker = median([s.worker_cpu_us for s in samples]) / per
    known = [s.database_cpu_us for s in samples if s.database_cpu_us is not None]
    database = f"{median(known) / per:.{digits}f} us" if known else "n/a (remote server)"
    return f"{worker:.{digits}f} us / {database}"


def single_event_bodies(count: int = 200, *, client_ids: bool = False) -> list[bytes]:
    """Small events as a tracking client sends them, spread over users, actions and pages.

    With `client_ids` each carries an id of its own (so each is new, as long as a
    round sends fewer requests than there are bodies).
    """
    actions = ("page_view", "page_view", "click", "scroll", "search", "signup")
    return [json.dumps({"user_id": 2 + (i * 7919) % 10_000, "action": actions[i % len(actions)],
                        "metadata": {"page": f"/p/{i % 50}", "ref": "direct"},
                        **({"id": str(uuid.uuid4())} if client_ids else {})}).encode()
            for i in range(count)]


def batch_bodies(size: int, count: int = 4) -> list[bytes]:
    """Batches of `size` events stamped a second ago, so none is late and ids are the server's."""
    occurred = format_rfc3339(utcnow() - timedelta(seconds=1))
    actions = ("page_view", "page_view", "click", "scroll", "search", "signup")
    return [json.dumps({"events": [
        {"user_id": 2 + (b * size + i) * 7919 % 10_000, "action": actions[i % len(actions)],
         "metadata": {"page": f"/p/{i % 50}", "ref": "direct"}, "occurred_at": occurred}
        for i in range(size)]}).encode() for b in range(count)]


class Bench:
    """One run: its database, servers and load generator, and the results it gathers."""

    def __init__(self, args: argparse.Namespace, loadgen: LoadGenerator, database: BenchDatabase,
                 app: Flask, service: BenchServer, references: BenchServer, gunicorn: BenchServer,
                 results: Results) -> None:
        self.args = args
        self.loadgen = loadgen
        self.database = database
        self.app = app
        self.service = service
        self.references = references  # on the service's own server
        self.gunicorn = gunicorn  # the same reference apps on gunicorn gthread
        self.results = results
        with app.app_context():
            self.window_size = settings().window_size
        self.window = window_of(utcnow() - timedelta(days=2), self.window_size)
        self.hot_events = args.events // HOT_EVERY
        self.first_list_requests: list[Request] = []

    def log(self, message: str) -> None:
        print(f"bench: {message}", flush=True)

    def http(self, server: BenchServer, requests: Sequence[Request], seconds: float | None = None,
             connections: int | None = None) -> HttpSample:
        """One closed-loop load run; fails the benchmark when requests fail."""
        cpu_before = server.workers_cpu_seconds()
        database_before = self.database.backends_cpu_seconds(server.application_name)
        result = self.loadgen.run(server.base_url, requests, connections=connections or self.args.connections,
                                  seconds=seconds or self.args.seconds)
        server.wait_idle()
        cpu = server.workers_cpu_seconds() - cpu_before
        database_after = self.database.backends_cpu_seconds(server.application_name)
        if result.errors > result.requests * 0.001:
            raise RuntimeError(f"{result.errors} of {result.requests} requests to {server.name} "
                               f"({requests[0].method} {requests[0].path}) failed; see {server.log_path}")
        per_request = 1e6 / max(result.requests, 1)
        database = (database_after - database_before) * per_request \
            if database_before is not None and database_after is not None else None
        return HttpSample(result, cpu * per_request, database)

    def warm(self, server: BenchServer, requests: Sequence[Request]) -> None:
        """Unrecorded load first, so pools are full and statements prepared when measuring starts."""
        if self.args.warmup > 0:
            self.loadgen.run(server.base_url, requests, connections=self.args.connections,
                             seconds=self.args.warmup)
            server.wait_idle()

    def rounds(self, runs: dict[str, Callable[[], Any]]) -> dict[str, list[Any]]:
        """Run each measurement once per round, reversing the order every other round."""
        measured: dict[str, list[Any]] = {name: [] for name in runs}
        for index in range(self.args.rounds):
            order = list(runs) if index % 2 == 0 else list(reversed(runs))
            for name in order:
                measured[name].append(runs[name]())
        return measured

    def ratio(self, numerators: Sequence[float], denominators: Sequence[float]) -> float:
        return median([n / d for n, d in zip(numerators, denominators) if d])

    def row(self, figure: str, value: str, reference: str, reference_value: str, ratio: float,
            target: tuple[str, Callable[[float], bool]]) -> None:
        text, check = target
        self.results.rows.append(Row(figure, value, reference, reference_value, ratio, text, check(ratio)))

    # 1. write path ---------------------------------------------------------------------------------

    def write_path(self) -> None:
        """Single events against the thin INSERT endpoint on both servers, then slow clients, pgbench and batches."""
        bodies = single_event_bodies()
        bare = [Request("POST", "/bare", body) for body in bodies]
        thin = [Request("POST", "/insert", body) for body in bodies]
        single = [Request("POST", "/api/event", body) for body in bodies]
        self.log("write path: warming up")
        self.warm(self.gunicorn, bare)
        self.warm(self.gunicorn, thin)
        self.warm(self.references, thin)
        self.warm(self.service, single)

        def fresh(server: BenchServer, requests: list[Request], connections: int) -> Callable[[], HttpSample]:
            def run() -> HttpSample:
                self.database.truncate_events()
                return self.http(server, requests, connections=connections)
            return run

        groups_before = self.group_sizes()
        series: dict[int, dict[str, list[HttpSample]]] = {}
        for connections in (self.args.connections, self.args.many_connections):
            self.log(f"write path: {self.args.rounds} rounds of the thin INSERT on gunicorn and on the service's "
                     f"server, and POST /api/event, at {connections} connections")
            series[connections] = self.rounds({
                "thin on gunicorn": fresh(self.gunicorn, thin, connections),
                "thin on ours": fresh(self.references, thin, connections),
                "single": fresh(self.service, single, connections)})
        groups = [after - before for after, before in zip(self.group_sizes(), groups_before)]
        for connections, measured in series.items():
            single_rates = [s.rate for s in measured["single"]]
            self.row(f"POST /api/event (one event), {connections} connections", describe_http(measured["single"]),
                     "thin Flask + psycopg INSERT on gunicorn gthread", describe_http(measured["thin on gunicorn"]),
                     self.ratio(single_rates, [s.rate for s in measured["thin on gunicorn"]]), SINGLE_TARGET)
            self.row(f"POST /api/event (one event), {connections} connections", describe_http(measured["single"]),
                     "the same thin app on the service's server", describe_http(measured["thin on ours"]),
                     self.ratio(single_rates, [s.rate for s in measured["thin on ours"]]), SAME_SERVER_TARGET)
            # Group commit may hold a request for its group's commit: its latency must stay close to the thin one's.
            self.row(f"POST /api/event p99, {connections} connections",
                     f"{median([s.p99_ms for s in measured['single']]):.1f} ms",
                     "thin INSERT on gunicorn gthread, p99",
                     f"{median([s.p99_ms for s in measured['thin on gunicorn']]):.1f} ms",
                     self.ratio([s.p99_ms for s in measured["single"]],
                                [s.p99_ms for s in measured["thin on gunicorn"]]), SINGLE_P99_TARGET)
            self.results.rows.append(Row(
                f"Thin INSERT on the service's server, {connections} connections",
                describe_http(measured["thin on ours"]), "the same app on gunicorn gthread",
                describe_http(measured["thin on gunicorn"]),
                self.ratio([s.rate for s in measured["thin on ours"]], [s.rate for s in measured["thin on gunicorn"]])))
            self.results.details += [
                f"Single events at {connections} connections: " + ", ".join(
                    f"{name} {', '.join(f'{s.rate:,.0f}' for s in samples)} req/s"
                    for name, samples in measured.items()) + " per round.",
                f"CPU per request at {connections} connections, web workers / PostgreSQL backends (median of rounds): "
                f"POST /api/event {cpu_split(measured['single'])}, thin INSERT on the service's server "
                f"{cpu_split(measured['thin on ours'])}, on gunicorn {cpu_split(measured['thin on gunicorn'])}.",
            ]
        self.log("write path: the bare Flask endpoint on gunicorn")
        bare_sample = self.http(self.gunicorn, bare)
        self.log("write path: pgbench single-row INSERTs")
        self.database.truncate_events()
        pgbench = self.database.single_insert_rate(seconds=self.args.seconds, clients=self.args.connections,
                                                   scratch=self.gunicorn.scratch)
        self.results.rows.append(Row("Bare Flask endpoint on gunicorn (framework ceiling)",
                                     describe_http([bare_sample])))
        self.results.rows.append(Row("PostgreSQL alone, single-row INSERTs (database ceiling)",
                                     f"{pgbench.rate:,.0f} tx/s"))
        self.results.details += [
            f"PostgreSQL single-row INSERTs measured with {pgbench.method}.",
            f"Group commit during the POST /api/event rounds: each event was committed with "
            f"{groups[1] / max(groups[0], 1):.2f} "
            f"events on average, itself included (tracking_events_group_size over {groups[0]:,.0f} events).",
        ]
        self.slow_clients()
        self.batch_path()
        self.client_path()
        self.write_costs()
        self.decoding()

    def slow_clients(self) -> None:
        """/healthz probed while sockets trickle their headers or their bodies, one byte at a time."""
        self.log(f"slow clients: {SLOW_HEADERS} slow-header and {SLOW_BODIES} slow-body sockets for "
                 f"{self.args.slow_seconds:.0f} s while /healthz is probed")
        probe = probe_under_slow_clients(self.service.port, headers=SLOW_HEADERS, bodies=SLOW_BODIES,
                                         seconds=self.args.slow_seconds)
        self.results.rows.append(Row(
            f"GET /healthz p99 under {SLOW_HEADERS} slow-header and {SLOW_BODIES} slow-body sockets",
            f"{probe.p99_ms:.1f} ms", "its target", f"{HEALTHZ_P99_MS:.0f} ms", probe.p99_ms / HEALTHZ_P99_MS,
            "ratio < 1.00", probe.p99_ms < HEALTHZ_P99_MS and probe.failed == 0))
        self.results.details.append(
            f"Slow clients: {probe.answered:,} /healthz probes answered, {probe.failed} failed (5 s timeout), "
            f"p50 {probe.p50_ms:.1f} ms, p99 {probe.p99_ms:.1f} ms, max {probe.max_ms:.1f} ms; "
            f"{probe.still_connected} of {SLOW_HEADERS + SLOW_BODIES} slow sockets still connected at the end "
            "(the rest timed out by the server).")

    def group_sizes(self) -> tuple[float, float]:
        """The service's tracking_events_group_size histogram: (events observed, sum of their group sizes)."""
        with urlopen(f"{self.service.base_url}/internal/metrics", timeout=10) as response:
            samples = {sample.name: sample.value for family in text_string_to_metric_families(response.read().decode())
                       for sample in family.samples if sample.name.startswith("tracking_events_group_size_")}
        return samples.get("tracking_events_group_size_count", 0.0), samples.get("tracking_events_group_size_sum", 0.0)

    def decoding(self) -> None:
        """In-process: the batch body decoded by msgspec (what the service uses) and by pydantic v2."""
        size = self.args.batch_size
        self.log(f"decoding: msgspec and pydantic on a {size}-event batch body")
        self.results.details.append(decoders.describe(decoders.compare(batch_bodies(size, 1)[0], size), size))
        self.log("batch insert: unnest arrays and binary COPY into a staging table, in-process")
        body = batch_bodies(size, 1)[0]
        news = parse_batch(body, now=utcnow(), bounds=InputBounds())
        with self.database.connect() as connection:
            compared = staging.compare(self.app, connection, news, self.database.truncate_events)
        self.results.details.append(staging.describe(compared, size))
        self.log("hooks: each per-request hook timed in-process")
        self.results.details.append(hooks.describe(hooks.hook_costs(self.app)))

    def batch_path(self) -> None:
        """1,000-event batches against COPY of pre-built rows into the same table."""
        size = self.args.batch_size
        requests = [Request("POST", "/api/events/batch", body) for body in batch_bodies(size)]
        rows = [(event_id, 2 + i * 7919 % 10_000, "page_view", '{"page": "/p/1", "ref": "direct"}',
                 utcnow(), utcnow()) for i, event_id in enumerate(new_event_ids(self.args.copy_rows))]
        self.warm(self.service, requests)

        def copy() -> CopyResult:
            self.database.truncate_events()
            return self.database.copy_rate(rows)

        def batch() -> HttpSample:
            self.database.truncate_events()
            return self.http(self.service, requests)

        self.log(f"write path: {self.args.rounds} rounds of COPY and POST /api/events/batch ({size} events)")
        measured = self.rounds({"copy": copy, "batch": batch})
        event_rates = [s.rate * size for s in measured["batch"]]
        copy_rates = [c.rate for c in measured["copy"]]
        self.row(f"POST /api/events/batch ({size:,} events each)", describe_http(measured["batch"], "events/s", size),
                 "COPY events FROM STDIN (psycopg, 1 connection)", f"{median(copy_rates):,.0f} rows/s",
                 self.ratio(event_rates, copy_rates), BATCH_TARGET)
        copy_database = [c.database_cpu_us for c in measured["copy"] if c.database_cpu_us is not None]
        self.results.details += [
            f"Batches: {', '.join(f'{r:,.0f}' for r in event_rates)} events/s; COPY: "
            f"{', '.join(f'{r:,.0f}' for r in copy_rates)} rows/s ({self.args.copy_rows:,} rows) per round.",
            f"CPU per batched event, web workers / PostgreSQL backends: {cpu_split(measured['batch'], size, 1)}"
            + (f"; PostgreSQL per COPY row: {median(copy_database):.1f} us." if copy_database else "."),
        ]
        known = [s.database_cpu_us for s in measured["batch"] if s.database_cpu_us is not None]
        if known:
            per_event = (median([s.worker_cpu_us for s in measured["batch"]]) + median(known)) / size
            ceiling = (os.cpu_count() or 1) * 1e6 / per_event
            self.results.details.append(
                f"At {per_event:.1f} us of CPU per batched event, {os.cpu_count()} cores top out at {ceiling:,.0f} "
                f"events/s, {ceiling / median(copy_rates):.2f} of COPY's rate; the run reached "
                f"{median(event_rates) / ceiling:.0%} of that.")

    def client_path(self) -> None:
        """The Python client from one process beside raw batch posts of the same events (bench/client.py)."""
        events = self.args.client_events
        client.raw_rate(self.service.base_url, BATCH)  # warm: the connection's statements, the client's imports

        def raw() -> float:
            self.database.truncate_events()
            return client.raw_rate(self.service.base_url, events)

        def tracked() -> float:
            self.database.truncate_events()
            return client.client_rate(self.service.base_url, events)

        self.log(f"write path: {self.args.rounds} rounds of the Python client and raw batch posts ({events:,} events)")
        measured = self.rounds({"raw": raw, "client": tracked})
        self.row(f"Python client from one process, {events:,} events (track, then flush)",
                 f"{median(measured['client']):,.0f} events/s",
                 "raw 1,000-event batch posts of the same events, one connection",
                 f"{median(measured['raw']):,.0f} events/s", self.ratio(measured["client"], measured["raw"]),
                 CLIENT_TARGET)
        self.results.details.append(
            f"Python client: {', '.join(f'{r:,.0f}' for r in measured['client'])} events/s; raw batch posts: "
            f"{', '.join(f'{r:,.0f}' for r in measured['raw'])} events/s per round.")

    def write_costs(self) -> None:
        """What two schema choices cost the write path, each beside the same run's figure without it.

        Client ids claim a key in event_keys (docs/storage.md, "Client ids"); the indexes of
        the list's `action` and `meta.*` filters are one more B-tree and a GIN index per
        partition. Each round starts from an empty table, with or without the indexes.
        """
        size = self.args.batch_size
        single = [Request("POST", "/api/event", body) for body in single_event_bodies()]
        keyed = [Request("POST", "/api/event", body) for body in single_event_bodies(CLIENT_ID_BODIES, client_ids=True)]
        batches = [Request("POST", "/api/events/batch", body) for body in batch_bodies(size)]

        def fresh(requests: list[Request], indexes: bool) -> Callable[[], HttpSample]:
            def run() -> HttpSample:
                self.database.truncate_events()
                self.database.list_filter_indexes(indexes)
                return self.http(self.service, requests)
            return run

        self.warm(self.service, keyed)
        self.log(f"write costs: {self.args.rounds} rounds of POST /api/event with the service's ids and client ids")
        ids = self.rounds({"service": fresh(single, True), "client": fresh(keyed, True)})
        self.log(f"write costs: {self.args.rounds} rounds of single events and batches with and without "
                 "the list-filter indexes")
        indexes = self.rounds({"with": fresh(single, True), "without": fresh(single, False),
                               "batch with": fresh(batches, True), "batch without": fresh(batches, False)})
        self.database.truncate_events()
        self.database.list_filter_indexes(True)  # the schema as migrated, for the phases that follow
        rates = {name: [s.rate for s in samples] for name, samples in {**ids, **indexes}.items()}
        self.results.rows += [
            Row("POST /api/event with a client id (claims its key in event_keys)", describe_http(ids["client"]),
                "the same with the service's ids (no key)", describe_http(ids["service"]),
                self.ratio(rates["client"], rates["service"])),
            Row("POST /api/event with the list-filter indexes", describe_http(indexes["with"]),
                "the same without them", describe_http(indexes["without"]),
                self.ratio(rates["with"], rates["without"])),
            Row(f"POST /api/events/batch ({size:,}) with the list-filter indexes",
                describe_http(indexes["batch with"], "events/s", size), "the same without them",
                describe_http(indexes["batch without"], "events/s", size),
                self.ratio(rates["batch with"], rates["batch without"])),
        ]
        scaled = {name: [rate * (size if name.startswith("batch") else 1) for rate in values]
                  for name, values in rates.items()}
        single_ratio = self.ratio(rates["with"], rates["without"])
        batch_ratio = self.ratio(rates["batch with"], rates["batch without"])
        self.results.details += [
            "Write costs per round: " + "; ".join(
                f"{name} {', '.join(f'{r:,.0f}' for r in values)} {'events/s' if name.startswith('batch') else 'req/s'}"
                for name, values in scaled.items()) + ".",
            "CPU per request, web workers / PostgreSQL backends: client ids "
            f"{cpu_split(ids['client'])}, service ids {cpu_split(ids['service'])}; with the list-filter indexes "
            f"{cpu_split(indexes['with'])}, without {cpu_split(indexes['without'])}; per batched event with "
            f"{cpu_split(indexes['batch with'], size, 1)}, without {cpu_split(indexes['batch without'], size, 1)}.",
            f"With the list-filter indexes, single events ran at {single_ratio:.2f} and batches at "
            f"{batch_ratio:.2f} of the throughput without them.",
        ]

    # 2. seed -------------------------------------------------------------------------------------

    def seed(self) -> None:
        """Fill one closed window with the events the read path and the metrics work on."""
        self.database.truncate_events()
        self.log(f"seeding {self.args.events:,} events into {format_rfc3339(self.window.start)}")
        seconds = self.database.seed(events=self.args.events, users=self.args.users, hot_user=HOT_USER,
                                     start=self.window.start, size=self.window_size)
        self.results.details.append(
            f"Seeded {self.args.events:,} events into the window {format_rfc3339(self.window.start)} + "
            f"{self.window_size} with INSERT ... SELECT generate_series in {seconds:.1f} s (VACUUM ANALYZE "
            f"included): {self.args.users:,} users skewed towards a few very active ones, plus the hot user "
            f"{HOT_USER} with {self.hot_events:,} events, 6 actions, small metadata objects.")

    # 3. read path --------------------------------------------------------------------------------

    def list_query(self, cursor: EventCursor | None = None) -> str:
        params = {"user_id": HOT_USER, "from": format_rfc3339(self.window.start),
                  "till": format_rfc3339(self.window.end), "limit": LIST_LIMIT}
        if cursor is not None:
            params["cursor"] = cursor.encode()
        return "/api/events?" + urlencode(params)

    def read_path(self) -> None:
        """The hot user's first page and a page 90% deep, their latency and their plans."""
        deep_offset = min(self.hot_events * 9 // 10, self.hot_events - LIST_LIMIT - 1)
        moment, key = self.database.row_at(user_id=HOT_USER, start=self.window.start, end=self.window.end,
                                           offset=deep_offset)
        deep_cursor = EventCursor(moment, key)
        first, deep = self.list_query(), self.list_query(deep_cursor)
        for path in (first, deep):
            with urlopen(self.service.base_url + path, timeout=10) as answer:
                if len(json.load(answer)["events"]) != LIST_LIMIT:
                    raise RuntimeError(f"{path} did not return a full page")
        first_requests, deep_requests = [Request("GET", first)], [Request("GET", deep)]
        self.warm(self.service, first_requests)
        self.warm(self.service, deep_requests)
        latency = self.args.latency_connections or self.args.workers
        self.log(f"read path: {self.args.rounds} rounds of the first and a deep page (event {deep_offset:,}), "
                 f"{latency} connections")
        measured = self.rounds({"first": lambda: self.http(self.service, first_requests, connections=latency),
                                "deep": lambda: self.http(self.service, deep_requests, connections=latency)})
        self.log(f"read path: both pages at {self.args.connections} connections")
        saturated = {"first": self.http(self.service, first_requests), "deep": self.http(self.service, deep_requests)}
        first_p99 = median([s.result.p99_ms for s in measured["first"]])
        deep_p99 = median([s.result.p99_ms for s in measured["deep"]])
        self.results.rows.append(Row(
            f"GET /api/events first page, one user's window ({LIST_LIMIT} of {self.hot_events:,})",
            describe_http(measured["first"]), "", "", None, f"p99 < {FIRST_PAGE_P99_MS:.0f} ms",
            first_p99 < FIRST_PAGE_P99_MS))
        self.row(f"GET /api/events deep keyset page (after event {deep_offset:,})", describe_http(measured["deep"]),
                 "the first page, p99", f"{first_p99:.1f} ms",
                 self.ratio([s.result.p99_ms for s in measured["deep"]], [s.result.p99_ms for s in measured["first"]]),
                 DEEP_PAGE_TARGET)
        self.results.details += [
            f"Events list latency with {latency} connections (one request in flight per worker); p99 per round: "
            f"first {', '.join(f'{s.result.p99_ms:.1f}' for s in measured['first'])} ms, "
            f"deep {', '.join(f'{s.result.p99_ms:.1f}' for s in measured['deep'])} ms (median {deep_p99:.1f} ms).",
            f"The same pages with {self.args.connections} connections: first {describe_http([saturated['first']])}, "
            f"deep {describe_http([saturated['deep']])}. More connections than workers add no throughput, only "
            "queueing (and GIL hand-offs between a worker's threads) to each request's latency.",
        ]
        flt = EventFilter(user_id=HOT_USER, start=self.window.start, end=self.window.end)
        self.plan(f"Events list, first page (user {HOT_USER}, one window)", lambda: list_events(database(), flt, limit=LIST_LIMIT))
        self.plan(f"Events list, deep keyset page (after event {deep_offset:,} of user {HOT_USER})",
                  lambda: list_events(database(), flt, limit=LIST_LIMIT, after=deep_cursor))
        self.first_list_requests = first_requests

    def plan(self, title: str, query: Callable[[], Any]) -> None:
        """Run a service query in-process, capture its SQL, and keep the EXPLAIN (ANALYZE, BUFFERS) of it."""
        with self.app.app_context():
            with captured_statements(db.engine) as seen:
                query()
            statement, parameters = seen[-1]
            self.results.plans.append((title, explain(db.engine, statement, parameters)))

    # 4. metrics ----------------------------------------------------------------------------------

    def metrics(self) -> None:
        """calculate_metrics() for the seeded window against the plain INSERT ... SELECT, and the plans."""
        settings = CalculationSettings(window_size=self.window_size)

        def plain() -> float:
            return self.database.plain_window_count(PLAIN_WINDOW_COUNT, self.window.start, self.window.end)

        def plain_actions() -> float:
            return self.database.plain_window_count(PLAIN_WINDOW_ACTIONS, self.window.start, self.window.end)

        def service() -> float:
            self.database.execute("TRUNCATE user_activity_metrics, metrics_windows")
            with self.app.app_context():
                began = time.perf_counter()
                summary = calculate_metrics(database(), settings, now=utcnow(), start=self.window.start,
                                            end=self.window.end, trigger="bench")
                elapsed = time.perf_counter() - began
            if summary.events != self.args.events:
                raise RuntimeError(f"calculate_metrics counted {summary.events} events, not {self.args.events}")
            return elapsed

        self.log(f"metrics: {self.args.rounds} rounds of the plain INSERT ... SELECTs and calculate_metrics()")
        plain()
        plain_actions()
        measured = self.rounds({"plain": plain, "plain_actions": plain_actions, "service": service})
        value = f"{median(measured['service']) * 1000:,.0f} ms"
        self.row(f"calculate_metrics(), one window of {self.args.events:,} events", value,
                 "plain INSERT ... SELECT grouped by user and action, folded per user",
                 f"{median(measured['plain_actions']) * 1000:,.0f} ms",
                 self.ratio(measured["service"], measured["plain_actions"]), METRICS_TARGET)
        self.results.rows.append(Row("the same calculation", value,
                                     "plain INSERT ... SELECT user_id, count(*) GROUP BY user only",
                                     f"{median(measured['plain']) * 1000:,.0f} ms",
                                     self.ratio(measured["service"], measured["plain"])))
        self.results.details.append(
            "Metrics per round: service " + ", ".join(f"{t * 1000:.0f}" for t in measured["service"])
            + " ms; plain by user and action " + ", ".join(f"{t * 1000:.0f}" for t in measured["plain_actions"])
            + " ms; plain by user " + ", ".join(f"{t * 1000:.0f}" for t in measured["plain"]) + " ms.")
        self.calculation_plans(settings)
        self.database.execute("ANALYZE user_activity_metrics")  # as autovacuum would after the first run
        self.plan(f"Metrics list, one user (user {HOT_USER}, a day either side of the window)",
                  lambda: list_metrics(database(), MetricFilter(user_id=HOT_USER, start=self.window.start - timedelta(days=1),
                                                    end=self.window.end + timedelta(days=1)), limit=LIST_LIMIT))
        self.plan("Metrics list, every user of the window, first page",
                  lambda: list_metrics(database(), MetricFilter(start=self.window.start, end=self.window.end), limit=LIST_LIMIT))

    def calculation_plans(self, settings: CalculationSettings) -> None:
        """The plans of the calculation's per-window statement and of the plain statement, as evidence."""
        self.database.execute("TRUNCATE user_activity_metrics, metrics_windows")
        with self.app.app_context():
            with captured_statements(db.engine) as seen:
                calculate_metrics(database(), settings, now=utcnow(), start=self.window.start, end=self.window.end,
                                  trigger="bench")
            statement, parameters = next((sql, params) for sql, params in seen if "per_action" in sql)
            # explained as the first computation of the window, in a transaction rolled back after
            prelude = ["TRUNCATE user_activity_metrics", *(sql for sql, _ in seen if sql.startswith("SET LOCAL"))]
            self.results.plans.append(("Metrics calculation, the service's statement for the window",
                                       explain(db.engine, statement, parameters, prelude)))
        self.results.plans.append(("Metrics calculation, the plain INSERT ... SELECT by user and action",
                                   self.database.explain(PLAIN_WINDOW_ACTIONS, (self.window.start, self.window.end))))
        self.results.plans.append(("Metrics calculation, the plain INSERT ... SELECT by user only",
                                   self.database.explain(PLAIN_WINDOW_COUNT, (self.window.start, self.window.end))))

    # 5. memory -----------------------------------------------------------------------------------

    def memory(self) -> None:
        """Each web worker's RSS before and after a long mixed load: a leak would show as growth."""
        bodies = single_event_bodies()
        mixed = [Request("POST", "/api/event", body) for body in bodies[:3]] + self.first_list_requests
        self.warm(self.service, mixed)
        pids = self.service.worker_pids()
        before = {pid: rss_mib(pid) for pid in pids}
        self.log(f"memory: {self.args.memory_seconds:.0f} s of POST /api/event and GET /api/events, 3 to 1")
        sample = self.http(self.service, mixed, seconds=self.args.memory_seconds)
        after = {pid: rss_mib(pid) for pid in self.service.worker_pids()}
        if set(after) != set(before):
            raise RuntimeError("a web worker was replaced during the memory run")
        growth = {pid: after[pid] / before[pid] for pid in pids}
        worst = max(pids, key=lambda pid: abs(growth[pid] - 1))
        self.results.rows.append(Row(
            f"Web worker RSS over {self.args.memory_seconds:.0f} s of mixed load",
            f"{before[worst]:.1f} -> {after[worst]:.1f} MiB", "its RSS at the start", f"{before[worst]:.1f} MiB",
            growth[worst], f"within +-{MEMORY_TOLERANCE:.0%}", abs(growth[worst] - 1) <= MEMORY_TOLERANCE))
        self.results.details.append(
            f"Memory run: {sample.result.requests:,} requests ({sample.rate:,.0f} req/s); RSS per worker "
            + ", ".join(f"{before[pid]:.1f} -> {after[pid]:.1f} MiB" for pid in pids) + ".")

    # 6. profile ----------------------------------------------------------------------------------

    def profile(self) -> None:
        """py-spy one worker under each write endpoint: where the CPU per request goes."""
        seconds = self.args.profile_seconds
        executable = profile.py_spy()
        if seconds <= 0 or executable is None:
            self.results.details.append("No py-spy profile in this run (" +
                                        ("--profile-seconds 0" if seconds <= 0 else "py-spy not installed") + ").")
            return
        endpoints = {
            "POST /api/event": [Request("POST", "/api/event", body) for body in single_event_bodies()],
            "POST /api/events/batch": [Request("POST", "/api/events/batch", body)
                                       for body in batch_bodies(self.args.batch_size)],
        }
        for index, (title, requests) in enumerate(endpoints.items()):
            output = self.service.scratch / f"profile-{index}.txt"
            self.log(f"profile: py-spy on one worker for {seconds:.0f} s of {title}")
            recorder = profile.start(executable, self.service.worker_pids()[0], seconds, output)
            self.loadgen.run(self.service.base_url, requests, connections=self.args.connections,
                             seconds=seconds + 1)
            _, errors = recorder.communicate(timeout=seconds + 30)
            self.service.wait_idle()
            if recorder.returncode != 0 or not output.exists():
                self.results.details.append(f"py-spy failed: {errors.decode(errors='replace')[-500:]}")
                return
            self.results.profiles.append((title, f"py-spy, 200 samples/s of the threads holding the GIL in one "
                                                 f"web worker, {seconds:.0f} s under the same load:\n\n```\n"
                                                 + profile.summarize(output) + "\n```"))

    # verdicts ------------------------------------------------------------------------------------

    def list_misses(self) -> None:
        """Each missed target, with its figure; why it was missed is for a person to say (RESULTS.md's
        "What the figures mean", kept from one run to the next)."""
        for row in self.results.rows:
            if row.met is False:
                against = f" against {row.reference_value}" if row.reference_value else ""
                self.results.misses.append(f"- **{row.figure}**: {row.value}{against} ({row.target}).")


def redis_version(url: str) -> str:
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        return str(client.info("server")["redis_version"])
    finally:
        client.close()


@contextmanager
def bench_database(server_url: str) -> Iterator[BenchDatabase]:
    with throwaway_database(server_url, "tracking_bench") as url:
        yield BenchDatabase(url)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every phase, print the table, write the report; exit 0 even when a target is missed."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop the servers, drop the database
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    command = " ".join(["python -m bench", *argv])
    began = time.monotonic()
    loadgen = load.choose(args.load_generator)
    namespace = f"bench-{uuid.uuid4().hex[:12]}"
    settings = ServerSettings(workers=args.workers, threads=args.threads)
    load_average = os.getloadavg()
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        database = stack.enter_context(bench_database(args.database_url))
        stack.callback(drop_namespace, args.redis_url, namespace)
        print(f"bench: database {database.name}, {loadgen.describe(args.connections)}", flush=True)
        # The ingest and read budgets stay on (their Redis round trip is part of the paths measured), but
        # high enough that one load generator on one address is never throttled.
        config = {"DATABASE_URL": database.url, "REDIS_URL": args.redis_url, "REDIS_NAMESPACE": namespace,
                  "DATABASE_POOL_SIZE": args.threads, "LOG_LEVEL": "WARNING",
                  "RATE_LIMIT_INGEST": "1000000 per second", "RATE_LIMIT_READ": "1000000 per second"}
        app = create_app(config)
        with app.app_context():
            upgrade()
        env = {**os.environ, **{key: str(value) for key, value in config.items()},
               "BENCH_POOL_SIZE": str(args.threads)}
        service = BenchServer("service", "wsgi:front", env, settings, scratch)
        references = BenchServer("references", "bench.reference_app:front", env, settings, scratch)
        gunicorn = BenchServer("references-gunicorn", "bench.reference_app:app", env, settings, scratch,
                               kind="gunicorn")
        for server in (service, references, gunicorn):
            server.env["DATABASE_URL"] = database.url_for(server.application_name)
        # as deployed (docker-compose.yml): the workers' Prometheus series shared through files, one scrape sees all
        service.env["PROMETHEUS_MULTIPROC_DIR"] = str(scratch / "prometheus")
        for server in (service, references, gunicorn):
            stack.callback(server.stop)
            server.start()
        results = Results(
            machine=machine_description(database.server_facts(), redis_version(args.redis_url)),
            settings=[settings.describe(), "Load generator: " + loadgen.describe(args.connections)
                      + f" ({args.latency_connections or args.workers} for the events list's latency)",
                      f"{args.rounds} interleaved rounds of {args.seconds:.0f} s per paired figure after "
                      f"{args.warmup:.0f} s of warm-up; each write round starts from an empty events table",
                      "Database pools: the service's SQLAlchemy pool and the reference's psycopg pool hold "
                      f"{args.threads} connections per worker (one per thread)",
                      f"Load average at the start: {' '.join(f'{v:.2f}' for v in load_average)} "
                      "(other work on the machine adds noise)"])
        bench = Bench(args, loadgen, database, app, service, references, gunicorn, results)
        bench.write_path()
        bench.seed()
        bench.read_path()
        bench.metrics()
        bench.memory()
        bench.profile()
        bench.list_misses()
        results.settings.append(f"Load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()
    duration = time.monotonic() - began
    print()
    print(text_table(results.rows))
    print()
    args.results.write_text(results.markdown(command, duration, kept_analysis(args.results)))
    print(f"bench: wrote {args.results} ({duration / 60:.1f} minutes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
