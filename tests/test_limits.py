"""Abuse limits: per-client budgets in Redis, answered with 429 and Retry-After."""
from __future__ import annotations

import pytest

from app.dev.embedded import start_redis
from tests.helpers import count_rows, separate_app

EVENT = {"user_id": 1, "action": "page_view"}


@pytest.fixture
def limited(app, app_config):
    with separate_app({**app_config, "RATE_LIMIT_INGEST": "3 per minute",
                       "RATE_LIMIT_RECALCULATE": "1 per minute"}) as limited_app:
        yield limited_app


def test_ingestion_over_budget_is_429_with_retry_after(limited, app):
    client = limited.test_client()
    assert [client.post("/api/event", json=EVENT).status_code for _ in range(3)] == [201, 201, 201]
    refused = client.post("/api/events/batch", json={"events": [EVENT]})
    assert refused.status_code == 429
    error = refused.get_json()["error"]
    assert error["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert error["retry_after"] == int(refused.headers["Retry-After"])
    assert count_rows(app, "events") == 3
    assert client.get("/api/events").status_code == 200


def test_budgets_are_per_client(limited):
    first = limited.test_client()
    for _ in range(3):
        first.post("/api/event", json=EVENT)
    assert first.post("/api/event", json=EVENT).status_code == 429
    other = limited.test_client()
    response = other.post("/api/event", json=EVENT, environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert response.status_code == 201


def test_recalculation_has_its_own_budget(limited):
    client = limited.test_client()
    assert client.post("/api/metrics").status_code == 202
    assert client.post("/api/metrics").status_code == 429
    assert client.post("/api/event", json=EVENT).status_code == 201


def test_limits_step_aside_while_redis_is_down(app, app_config, tmp_path):
    own = start_redis(tmp_path / "valkey")
    own.stop()
    with separate_app({**app_config, "REDIS_URL": own.url, "RATE_LIMIT_INGEST": "1 per minute"}) as down:
        client = down.test_client()
        assert [client.post("/api/event", json=EVENT).status_code for _ in range(3)] == [201, 201, 201]
