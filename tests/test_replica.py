"""Reads on a real streaming replica, and back on the primary while it lags or is down.

The module starts a primary and a hot standby of its own (`app/dev/replica.py`):
pausing WAL replay on the standby makes it fall behind for real, stopping it
makes it go away for real.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from flask_migrate import upgrade
from prometheus_client.parser import text_string_to_metric_families

from app.dev.replica import ReplicaPair, postgres_bindir, start_replica_pair
from tests.helpers import post_event, separate_app, wait_until
from tests.openapi_check import ValidatingClient

BINDIR = postgres_bindir()
pytestmark = pytest.mark.skipif(BINDIR is None, reason="no PostgreSQL binaries (initdb, pg_ctl, pg_basebackup)")


@pytest.fixture(scope="module")
def pair() -> Iterator[ReplicaPair]:
    assert BINDIR is not None
    pair = start_replica_pair(BINDIR)
    yield pair
    pair.stop()


@pytest.fixture
def urls(pair: ReplicaPair, app_config) -> Iterator[tuple[str, str]]:
    """A migrated database on the primary, and the same database as the standby streams it."""
    name = f"tracking_replica_{uuid.uuid4().hex[:8]}"
    pair.primary.execute(f'CREATE DATABASE "{name}"')
    with separate_app({**app_config, "DATABASE_URL": pair.primary.url(name)}) as app, app.app_context():
        upgrade()
    yield pair.primary.url(name), pair.standby.url(name)


def listed(client) -> list[int]:
    response = client.get("/api/events")
    assert response.status_code == 200
    return sorted(event["user_id"] for event in response.get_json()["events"])


def exported(client) -> list[int]:
    lines = client.get("/api/events/export").get_data(as_text=True).splitlines()[1:]
    return sorted(int(line.split(",")[1]) for line in lines)


def gauges(client) -> dict[str, float]:
    text = client.get("/internal/metrics").get_data(as_text=True)
    return {sample.name: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name.startswith("tracking_database_")}


def replica_check(client) -> dict:
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["checks"]["replica"]


def test_reads_use_the_replica_and_fall_back_to_the_primary_while_it_lags_or_is_down(pair, urls, app_config):
    primary_url, standby_url = urls
    config = {**app_config, "DATABASE_URL": primary_url, "DATABASE_READ_URL": standby_url,
              "DATABASE_READ_CHECK_SECONDS": 0}
    with separate_app({**config, "DATABASE_READ_MAX_LAG_SECONDS": 3600}) as tolerant, \
            separate_app({**config, "DATABASE_READ_MAX_LAG_SECONDS": 1}) as strict:
        tolerant.test_client_class = strict.test_client_class = ValidatingClient  # answers match the OpenAPI document
        patient, picky = tolerant.test_client(), strict.test_client()
        assert post_event(patient, user_id=1).status_code == 201
        wait_until(lambda: listed(patient) == [1], timeout=30, what="the replica replays the first event")
        assert replica_check(picky) == {"status": "ok", "reads": "replica", "lag_seconds": 0.0}
        assert gauges(picky)["tracking_database_reads_on_replica"] == 1.0

        # The standby stops applying WAL: what it serves stays as it was.
        pair.pause_replay()
        try:
            assert post_event(patient, user_id=2).status_code == 201  # writes go to the primary
            assert listed(patient) == [1]                              # reads to the (lagging) replica
            assert exported(patient) == [1]
            assert 'data-label="User">2<' not in patient.get("/events").get_data(as_text=True)
            # Beyond the strict app's limit, its reads move to the primary and see the new event.
            wait_until(lambda: listed(picky) == [1, 2], timeout=30, what="the strict app falls back")
            assert exported(picky) == [1, 2]
            check = replica_check(picky)
            assert (check["status"], check["reads"]) == ("degraded", "primary")
            assert check["lag_seconds"] > 1 and "behind the primary" in check["error"]
            assert gauges(picky)["tracking_database_reads_on_replica"] == 0.0
            assert gauges(picky)["tracking_database_replica_lag_seconds"] > 1
        finally:
            pair.resume_replay()
        wait_until(lambda: replica_check(picky)["reads"] == "replica", timeout=30, what="the replica catches up")
        assert listed(picky) == [1, 2]

        # The standby goes away: every read still answers, from the primary.
        pair.standby.stop()
        assert listed(patient) == [1, 2]
        assert exported(picky) == [1, 2]
        assert post_event(patient, user_id=3).status_code == 201
        assert listed(picky) == [1, 2, 3]
        check = replica_check(patient)
        assert (check["status"], check["reads"]) == ("degraded", "primary")
        assert gauges(patient)["tracking_database_reads_on_replica"] == 0.0
