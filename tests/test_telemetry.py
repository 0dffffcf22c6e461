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

import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from app.extensions import db, runtime, settings
from app.runtime.redis_clients import SCRAPE_CLIENT_NAME
from tests.helpers import post_event, separate_app
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


def value(samples: Samples, name: str, labels: dict[str, str] | None = None, /, **more: str) -> float:
    return samples.get((name, frozenset({**(labels or {}), **more}.items())), 0.0)


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


METRICS_TOKEN = "scrape-token-for-tests"


def test_with_a_metrics_token_only_a_scrape_bearing_it_is_answered(app_config):
    with separate_app({**app_config, "METRICS_TOKEN": METRICS_TOKEN}) as app:
        app.test_client_class = ValidatingClient
        client = app.test_client()
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": METRICS_TOKEN}):
            refused = client.get("/internal/metrics", headers=headers)
            assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
            assert refused.get_data() == b"send METRICS_TOKEN as `Authorization: Bearer <token>`\n"
        answered = client.get("/internal/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert answered.status_code == 200


def test_with_access_control_on_and_no_metrics_token_nobody_may_scrape(app_config, caplog):
    protected = {**app_config, "API_TOKENS_FULL": "full-token", "ADMIN_PASSWORD_HASH": "scrypt:unused"}
    with separate_app(protected) as app:
        app.test_client_class = ValidatingClient
        for headers in ({}, {"Authorization": "Bearer full-token"}):  # an API token is no scrape token
            response = app.test_client().get("/internal/metrics", headers=headers)
            assert response.status_code == 404 and response.get_data() == b"not found\n"
    # the operator whose Prometheus gets 404s learns why
    assert "refused a scrape of /internal/metrics: access control is on and METRICS_TOKEN is not set" in caplog.text
    with separate_app({**protected, "METRICS_TOKEN": METRICS_TOKEN}) as app:
        app.test_client_class = ValidatingClient
        response = app.test_client().get("/internal/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert response.status_code == 200


def scrape_connections(app) -> tuple[set[int], set[str]]:
    """The backends of scrape connections to this test's database, and the scrape clients of its namespace."""
    with app.app_context():
        pids = db.session.execute(sa.text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = :name"),
            {"name": SCRAPE_CLIENT_NAME}).scalars().all()
        name = f"{SCRAPE_CLIENT_NAME}:{settings().redis_namespace}"
        clients = [entry["id"] for entry in runtime().background_redis.client_list() if entry["name"] == name]
    return set(pids), set(clients)


def test_scrapes_reuse_their_connections_and_replace_one_the_database_cut(app, client):
    before_pids, before_clients = scrape_connections(app)  # other apps' of this session, if any are left
    scrape(client)
    pids, clients = scrape_connections(app)
    ours = (pids - before_pids, clients - before_clients)
    assert len(ours[0]) == 1 and len(ours[1]) == 1, ours
    for _ in range(3):
        scrape(client)
    pids, clients = scrape_connections(app)
    assert (pids - before_pids, clients - before_clients) == ours  # the same backend, the same Redis connection

    with app.app_context():  # a database restart cuts it between two scrapes
        db.session.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": next(iter(ours[0]))})
        db.session.commit()
    samples = scrape(client)
    assert value(samples, "tracking_collector_up", collector="calculations") == 1
    pids, _ = scrape_connections(app)
    replaced = pids - before_pids
    assert len(replaced) == 1 and replaced != ours[0]
