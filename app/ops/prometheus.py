"""Operational metrics for Prometheus at `GET /internal/metrics` (not the user-facing /api/metrics).

Two kinds of series:

- Per process, counted where things happen: HTTP requests and their latency
  per route template, events ingested, duplicates ignored, late events. Under
  gunicorn with several workers, set PROMETHEUS_MULTIPROC_DIR (an environment
  variable: prometheus_client reads it when imported) so every worker writes
  to files there and a scrape of any worker sums them all. The counters are
  created when the first app is built, not at import. Requests queue their
  observations and a thread of the process applies them every 0.1 s
  (`app.runtime.observations`), so a scrape sees another worker's at most that late.
- Per deployment, read at scrape time: calculation runs (from the
  `calculation_runs` ledger, so runs by any worker or the CLI count, and a
  restart loses nothing) and queue depth (from Redis). Every web process
  reports the same values: aggregate these with max(), not sum(). A dependency
  that is down makes its collector report `tracking_collector_up 0` instead
  of failing the scrape. Each process keeps one PostgreSQL connection and one
  Redis client for its scrapes (its runtime's `scrape_database` and
  `scrape_redis`), rather than opening new ones every 15 seconds.

Who may scrape: with METRICS_TOKEN set, only a request bearing it; without
one, anyone while access control is off (a local `make run`), and nobody once
it is on (404), since the exposition tells an outsider a good deal.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, request
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from rq import Queue
from werkzeug.wrappers import Response

from ..core.settings import Settings
from ..extensions import runtime, settings
from ..http.errors import ApiError
from ..http.policy import Access, policy
from ..jobs.queue import CALCULATION_QUEUE, namespaced
from ..runtime import Runtime
from ..runtime.replica import ReplicaMonitor

log = logging.getLogger(__name__)
bp = Blueprint("prometheus", __name__)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"  # 404s: one label value, however many paths are probed
RUN_DURATION_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0)


@dataclass(frozen=True)
class ProcessMetrics:
    """The series this process counts itself."""

    http_requests: Counter
    http_request_seconds: Histogram
    events_ingested: Counter
    events_duplicates: Counter
    events_late: Counter
    events_group_size: Histogram
    # (method, route, status) -> its counter and histogram children: `labels()` takes a lock and checks its
    # arguments on every call; the keys are few (routes are templates, methods and statuses a short list)
    request_series: dict[tuple[str, str, int], tuple[Any, Any]] = field(default_factory=dict)

    def request_series_of(self, method: str, route: str, status: int) -> tuple[Any, Any]:
        key = (method, route, status)
        series = self.request_series.get(key)
        if series is None:
            series = self.request_series[key] = (self.http_requests.labels(method, route, str(status)),
                                                 self.http_request_seconds.labels(method, route))
        return series


_process: ProcessMetrics | None = None


def process_metrics(multiproc_dir: str | None) -> ProcessMetrics:
    """This process's counters, created on first use rather than at import.

    In multiprocess mode a counter opens its file when it is created, so the
    directory is made first; and a gunicorn master, which never builds the app,
    writes no file of its own.
    """
    global _process
    if _process is None:
        if multiproc_dir:
            Path(multiproc_dir).mkdir(parents=True, exist_ok=True)
        _process = ProcessMetrics(
            http_requests=Counter("tracking_http_requests",
                                  "HTTP requests answered, by method, route template and status.",
                                  ["method", "route", "status"]),
            http_request_seconds=Histogram(
                "tracking_http_request_duration_seconds",
                "Time from the start of a request to its response, by method and route template.",
                ["method", "route"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)),
            events_ingested=Counter("tracking_events_ingested", "Events stored for the first time."),
            events_duplicates=Counter("tracking_events_duplicates",
                                      "Retried events (a client id seen before) answered with the stored event, "
                                      "not stored again."),
            events_group_size=Histogram(
                "tracking_events_group_size",
                "For each single event stored (POST /api/event), how many events its commit stored, itself "
                "included: the reach of the group commit.", buckets=(1, 2, 4, 8, 16, 32, 64, 128)),
            events_late=Counter("tracking_events_late", "Events stored for an already closed window; each marks "
                                                        "its window for recalculation."),
        )
    return _process


def _metrics() -> ProcessMetrics:
    return process_metrics(settings().prometheus_multiproc_dir)


def count_events(*, created: int = 0, duplicates: int = 0, late: int = 0, group: int | None = None) -> None:
    """Record what one ingestion call did; called by the API after the events service committed.

    `group`, for a single event: how many events were committed with it (itself included).
    """
    metrics = _metrics()
    pending = runtime().observations
    if group is not None:
        pending.add(metrics.events_group_size.observe, group)
    for counter, amount in ((metrics.events_ingested, created), (metrics.events_duplicates, duplicates),
                            (metrics.events_late, late)):
        if amount:
            pending.add(counter.inc, amount)


def init_app(app: Flask, config: Settings) -> None:
    process_metrics(config.prometheus_multiproc_dir)
    app.after_request(_observe_request)
    app.register_blueprint(bp)


def _observe_request(response: Response) -> Response:
    method = request.method if request.method in METHODS else "other"
    route = request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE
    requests, seconds = _metrics().request_series_of(method, route, response.status_code)
    pending = runtime().observations
    pending.add(requests.inc, 1)
    pending.add(seconds.observe, time.perf_counter() - request.started)  # type: ignore[attr-defined]
    return response


class QueueSource:
    """Jobs waiting, running and failed per queue, read from Redis at scrape time with the scrape client."""

    name = "queue"

    def __init__(self, process: Runtime, queues: dict[str, str]) -> None:
        self.runtime = process
        self.queues = queues  # label -> Redis queue name

    def read(self) -> list[Metric] | None:
        jobs = GaugeMetricFamily("tracking_queue_jobs", "RQ jobs per queue and state (queued is the queue depth).",
                                 labels=["queue", "state"])
        try:
            for label, name in self.queues.items():
                queue = Queue(name, connection=self.runtime.scrape_redis)
                jobs.add_metric([label, "queued"], len(queue))
                jobs.add_metric([label, "started"], queue.started_job_registry.count)
                jobs.add_metric([label, "failed"], queue.failed_job_registry.count)
        except Exception as exc:  # Redis down must not fail the whole scrape
            log.warning("queue metrics unavailable: %s", type(exc).__name__)
            return None
        return [jobs]


_RUNS = (
    "WITH runs AS (SELECT trigger, status, finished_at, "
    "extract(epoch FROM finished_at - started_at)::float8 AS seconds "
    "FROM calculation_runs WHERE finished_at IS NOT NULL) "
    "SELECT trigger, status, count(*), coalesce(sum(seconds), 0), max(finished_at), "
    + ", ".join(f"count(*) FILTER (WHERE seconds <= {bound!r})" for bound in RUN_DURATION_BUCKETS)
    + " FROM runs GROUP BY trigger, status ORDER BY trigger, status"
)


class CalculationSource:
    """Ended calculation runs by trigger and outcome, and their durations, from the ledger, read on the
    process's scrape connection (`app.runtime.connections.ScrapeConnection`)."""

    name = "calculations"

    def __init__(self, process: Runtime) -> None:
        self.runtime = process

    def read(self) -> list[Metric] | None:
        try:
            rows = self.runtime.scrape_database.rows(_RUNS)
        except Exception as exc:  # the database down must not fail the whole scrape
            log.warning("calculation metrics unavailable: %s", type(exc).__name__)
            return None
        return _run_metrics(rows)


def _run_metrics(rows: list[tuple[Any, ...]]) -> list[Metric]:
    """The ledger's rows as the runs counter, the duration histogram and the last success."""
    runs = CounterMetricFamily("tracking_calculation_runs",
                               "Calculation runs that ended, by trigger and final status.",
                               labels=["trigger", "outcome"])
    counts: dict[str, int] = {}
    seconds: dict[str, float] = {}
    within: dict[str, list[int]] = {}
    last_success = None
    for trigger, status, count, total_seconds, finished, *bucket_counts in rows:
        runs.add_metric([trigger, status], count)
        counts[status] = counts.get(status, 0) + count
        seconds[status] = seconds.get(status, 0.0) + total_seconds
        within[status] = [a + b for a, b in zip(within.get(status, [0] * len(bucket_counts)), bucket_counts)]
        if status == "finished" and (last_success is None or finished > last_success):
            last_success = finished
    histogram = HistogramMetricFamily("tracking_calculation_run_duration_seconds",
                                      "Duration of calculation runs that ended, by final status.",
                                      labels=["outcome"])
    for status, count in counts.items():
        buckets = [(repr(bound), n) for bound, n in zip(RUN_DURATION_BUCKETS, within[status])] + [("+Inf", count)]
        histogram.add_metric([status], buckets, seconds[status])
    metrics: list[Metric] = [runs, histogram]
    if last_success is not None:
        metrics.append(GaugeMetricFamily("tracking_calculation_last_success_timestamp_seconds",
                                         "When the last successful calculation run finished (Unix time).",
                                         value=last_success.timestamp()))
    return metrics


class ReplicaSource:
    """Where this process sends its reads, and the replica's lag, when DATABASE_READ_URL is set."""

    name = "replica"

    def __init__(self, monitor: ReplicaMonitor) -> None:
        self.monitor = monitor

    def read(self) -> list[Metric] | None:
        state = self.monitor.state()
        metrics: list[Metric] = [GaugeMetricFamily(
            "tracking_database_reads_on_replica",
            "1 while read-only queries go to the replica, 0 while they fall back to the primary "
            "(replica down or lagging beyond DATABASE_READ_MAX_LAG_SECONDS).",
            value=1.0 if state.usable else 0.0)]
        if state.lag_seconds is not None:
            metrics.append(GaugeMetricFamily("tracking_database_replica_lag_seconds",
                                             "How far the replica was behind the primary at the last check.",
                                             value=state.lag_seconds))
        return metrics


Source = QueueSource | CalculationSource | ReplicaSource


class _Exposition(Collector):
    """Everything one scrape reports: the process's own series, then the scrape-time sources."""

    def __init__(self, own_series: Collector, sources: Iterable[Source]) -> None:
        self.own_series = own_series
        self.sources = list(sources)

    def collect(self) -> Iterator[Metric]:
        yield from self.own_series.collect()
        up = GaugeMetricFamily("tracking_collector_up",
                               "1 when a scrape-time collector could read its source (Redis, PostgreSQL).",
                               labels=["collector"])
        for source in self.sources:
            metrics = source.read()
            yield from metrics or []
            up.add_metric([source.name], 0.0 if metrics is None else 1.0)
        yield up


def _process_collector(multiproc_dir: str | None) -> Collector:
    if not multiproc_dir:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=multiproc_dir)
    return registry


@bp.errorhandler(ApiError)
def refused(exc: ApiError) -> Response:
    """A scrape its policy refused, in a line of plain text (Prometheus shows it as the target's error)."""
    return Response(exc.message + "\n", status=exc.status, mimetype="text/plain", headers=exc.headers)


@bp.get("/internal/metrics")
@policy(Access.METRICS_TOKEN, budgets=(), csrf=False, logged=False)
def exposition() -> Response:
    """The Prometheus text exposition, for whoever may scrape it (see the module docstring)."""
    config = settings()
    process = runtime()
    process.observations.apply()  # this process's own observations are all in
    collectors: list[Source] = [
        QueueSource(process, {"metrics": namespaced(config.redis_namespace, CALCULATION_QUEUE)}),
        CalculationSource(process)]
    if process.replica_monitor is not None:
        collectors.append(ReplicaSource(process.replica_monitor))
    scrape = _Exposition(_process_collector(config.prometheus_multiproc_dir), collectors)
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encoder(scrape), content_type=content_type)  # type: ignore[arg-type]
