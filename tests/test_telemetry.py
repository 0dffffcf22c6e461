"""`/internal/metrics`: what Prometheus sees after real requests, calculations and queueing.

Process counters are global and keep counting across tests, so each test
compares a scrape after its actions with one before.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from tests.helpers import post_event
from tests.openapi_check import ValidatingClient

ROOT = Path(__file__).resolve().parent.parent
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client) -> Samples:
    response = client.get("/internal/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.get_data(as_text=True))
            for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_requests_are_counted_and_timed_per_route_template(client):
    before = scrape(client)
    client.get("/api/metrics/jobs/one")
    client.get("/api/metrics/jobs/two")
    client.get("/no/such/page")
    after = scrape(client)
    route = "/api/metrics/jobs/<job_id>"
    assert value(after, "tracking_http_requests_total", method="GET", route=route, status="404") - value(
        before, "tracking_http_requests_total", method="GET", route=route, status="404") == 2
    assert value(after, "tracking_http_request_duration_seconds_count", method="GET", route=route) - value(
        before, "tracking_http_request_duration_seconds_count", method="GET", route=route) == 2
    assert value(after, "tracking_http_request_duration_seconds_bucket", method="GET", route=route, le="+Inf") >= 2
    assert value(after, "tracking_http_requests_total", method="GET", route="unmatched", status="404") > value(
        before, "tracking_http_requests_total", method="GET", route="unmatched", status="404")
    assert not any("/api/metrics/jobs/one" in dict(labels).get("route", "") for _, labels in after)


def test_ingestion_counts_new_duplicate_and_late_events(client):
    before = scrape(client)
    event_id = str(uuid.uuid4())
    assert post_event(client, id=event_id, occurred_at="2025-10-20T01:00:00Z").status_code == 201  # late
    assert post_event(client, id=event_id, occurred_at="2025-10-20T01:00:00Z").status_code == 200  # retry
    assert post_event(client).status_code == 201  # now: its window is still open
    after = scrape(client)
    delta = {name: value(after, name) - value(before, name)
             for name in ("tracking_events_ingested_total", "tracking_events_duplicates_total",
                          "tracking_events_late_total")}
    assert delta == {"tracking_events_ingested_total": 2, "tracking_events_duplicates_total": 1,
                     "tracking_events_late_total": 1}


def test_calculation_runs_come_from_the_ledger_with_outcome_and_duration(client, runner):
    assert value(scrape(client), "tracking_calculation_runs_total", trigger="cli", outcome="finished") == 0
    post_event(client, occurred_at="2025-10-20T01:00:00Z")
    assert runner.invoke(args=["calculate-metrics"]).exit_code == 0
    assert runner.invoke(args=["calculate-metrics"]).exit_code == 0
    samples = scrape(client)
    assert value(samples, "tracking_calculation_runs_total", trigger="cli", outcome="finished") == 2
    assert value(samples, "tracking_calculation_run_duration_seconds_count", outcome="finished") == 2
    assert value(samples, "tracking_calculation_run_duration_seconds_bucket", outcome="finished", le="+Inf") == 2
    assert value(samples, "tracking_calculation_last_success_timestamp_seconds") > 0
    assert value(samples, "tracking_collector_up", collector="calculations") == 1


def test_queue_depth_is_read_at_scrape_time(client):
    assert value(scrape(client), "tracking_queue_jobs", queue="metrics", state="queued") == 0
    assert client.post("/api/metrics").status_code == 202
    samples = scrape(client)
    assert value(samples, "tracking_queue_jobs", queue="metrics", state="queued") == 1
    assert value(samples, "tracking_collector_up", collector="queue") == 1


def test_a_scrape_survives_redis_and_postgres_being_down(app_config):
    app = create_app({**app_config, "REDIS_URL": "redis://127.0.0.1:9/0",
                      "DATABASE_URL": "postgresql://postgres@127.0.0.1:9/none"})
    app.test_client_class = ValidatingClient
    samples = scrape(app.test_client())
    assert value(samples, "tracking_collector_up", collector="queue") == 0
    assert value(samples, "tracking_collector_up", collector="calculations") == 0
    assert not any(name == "tracking_queue_jobs" for name, _ in samples)


def test_openmetrics_is_served_when_asked_for(client):
    response = client.get("/internal/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.mimetype == "application/openmetrics-text"
    assert response.get_data(as_text=True).rstrip().endswith("# EOF")


def test_any_process_starts_with_a_multiprocess_dir_that_does_not_exist_yet(app_config, tmp_path):
    """A PROMETHEUS_MULTIPROC_DIR in a shared .env must not break the worker or `flask db upgrade`."""
    directory = tmp_path / "not" / "there"
    env = {**os.environ, **{key: str(value) for key, value in app_config.items()},
           "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    result = subprocess.run([sys.executable, "-c", "from app import create_app; create_app()"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert directory.is_dir()
