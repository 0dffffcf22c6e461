"""Abuse limits: per-client budgets in Redis, answered with 429 and Retry-After."""
from __future__ import annotations

import logging
import re
import socket
import threading

import pytest
from werkzeug.security import generate_password_hash

from app.dev.embedded import start_redis
from app.extensions import runtime
from tests.helpers import count_rows, separate_app, wait_until
from tests.openapi_check import ValidatingClient

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


def test_while_redis_is_down_ingestion_goes_on_and_each_process_still_holds_the_limit(app, app_config, tmp_path):
    own = start_redis(tmp_path / "valkey")
    own.stop()
    with separate_app({**app_config, "REDIS_URL": own.url, "RATE_LIMIT_INGEST": "2 per minute"}) as down:
        client = down.test_client()
        assert [client.post("/api/event", json=EVENT).status_code for _ in range(3)] == [201, 201, 429]
    assert count_rows(app, "events") == 2


def test_a_client_refused_by_one_web_process_is_refused_by_another(app, app_config):
    """Ingestion budgets are counted in each process and shared through Redis in the background
    (RATE_LIMIT_SYNC_MS): once shared, another process starts from the shared count, not from zero."""
    config = {**app_config, "RATE_LIMIT_INGEST": "3 per hour", "RATE_LIMIT_SYNC_MS": 10}
    with separate_app(config) as one, separate_app(config) as other:
        client = one.test_client()
        assert [client.post("/api/event", json=EVENT).status_code for _ in range(4)] == [201, 201, 201, 429]
        with one.app_context():
            counts = runtime().budget_counts
        wait_until(lambda: sum(int(counts.redis.get(key)) for key in counts.redis.scan_iter(f"{counts.prefix}:*")) == 3,
                   what="the first process shares its count")
        assert other.test_client().post("/api/event", json=EVENT).status_code == 429
    assert count_rows(app, "events") == 3


# Who pays: a client key comes only from a verified token, else from the address (issue 11, class 2).

def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_a_made_up_token_brings_no_budget_of_its_own(limited):
    client = limited.test_client()
    for n in range(3):
        assert client.post("/api/event", json=EVENT, headers=bearer(f"made-up-{n}")).status_code == 201
    assert client.post("/api/event", json=EVENT, headers=bearer("made-up-3")).status_code == 429
    assert client.post("/api/metrics", headers=bearer("made-up-4")).status_code == 202
    assert client.post("/api/metrics", headers=bearer("made-up-5")).status_code == 429


def test_each_configured_token_has_its_own_budget(app, app_config):
    config = {**app_config, "ACCESS_CONTROL": "off", "API_TOKENS_INGEST": "ingest-a,ingest-b",
              "RATE_LIMIT_INGEST": "2 per minute"}
    with separate_app(config) as tokens_app:
        client = tokens_app.test_client()
        statuses = [client.post("/api/event", json=EVENT, headers=bearer("ingest-a")).status_code for _ in range(3)]
        assert statuses == [201, 201, 429]
        assert client.post("/api/event", json=EVENT, headers=bearer("ingest-b")).status_code == 201
        # the address's budget is a third one: a wrong token falls back to it
        assert client.post("/api/event", json=EVENT, headers=bearer("wrong")).status_code == 201


def test_a_forwarded_address_counts_only_behind_a_trusted_proxy(app, app_config, caplog):
    budget = {"RATE_LIMIT_INGEST": "2 per minute"}
    with separate_app({**app_config, **budget}) as direct:
        client = direct.test_client()
        statuses = [client.post("/api/event", json=EVENT, headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
                    for n in range(3)]
        assert statuses == [201, 201, 429]  # TRUSTED_PROXIES=0: the header is anyone's to forge
    with separate_app({**app_config, **budget, "TRUSTED_PROXIES": 1,
                       "TRUSTED_PROXY_ADDRESSES": "10.0.0.2, 10.1.0.0/16"}) as proxied:
        client = proxied.test_client()

        def post(forwarded, peer="10.0.0.2"):
            return client.post("/api/event", json=EVENT, environ_base={"REMOTE_ADDR": peer},
                               headers={"X-Forwarded-For": forwarded}).status_code

        assert [post("198.51.100.7") for _ in range(3)] == [201, 201, 429]
        assert post("198.51.100.8") == 201
        assert post("198.51.100.8", peer="10.1.7.7") == 201  # another proxy of the trusted network
        # only the hop the proxy added is believed, not what the client wrote before it
        assert post("203.0.113.9, 198.51.100.7") == 429
        # a client reaching the server around the proxy is its own address, whatever it forwards (and a proxy
        # missing from TRUSTED_PROXY_ADDRESSES is named in the log, once)
        with caplog.at_level(logging.WARNING, logger="app.http.proxies"):
            assert [post(f"192.0.2.{n}", peer="10.0.0.99") for n in range(3)] == [201, 201, 429]
        assert [r.getMessage() for r in caplog.records if r.name == "app.http.proxies"] == [
            "X-Forwarded-For from 10.0.0.99 ignored: not in TRUSTED_PROXY_ADDRESSES (logged once)"]
        assert post("198.51.100.99", peer="::ffff:10.0.0.2") == 201  # the proxy over a dual-stack socket


# Reads have a budget too (issue 11, class 8).

@pytest.fixture
def read_limited(app, app_config):
    with separate_app({**app_config, "RATE_LIMIT_READ": "3 per minute"}) as limited_app:
        limited_app.test_client_class = ValidatingClient  # the 429s must be in the OpenAPI document
        yield limited_app


def test_reads_share_one_budget_per_client(read_limited):
    client = read_limited.test_client()
    assert client.get("/api/events").status_code == 200
    assert client.get("/api/metrics").status_code == 200
    export = client.get("/api/events/export")
    assert export.status_code == 200
    export.close()
    refused = client.get("/api/events")
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert client.get("/api/metrics").status_code == 429
    assert client.get("/api/events/export").status_code == 429
    assert client.post("/api/event", json=EVENT).status_code == 201  # writes have their own budget
    assert client.get("/api/events", environ_base={"REMOTE_ADDR": "10.9.8.7"}).status_code == 200


@pytest.mark.parametrize("path", ["/events", "/events/export", "/metrics"])
def test_the_dashboard_reads_spend_the_read_budget(read_limited, path):
    client = read_limited.test_client()
    assert [client.get("/api/events").status_code for _ in range(3)] == [200, 200, 200]
    refused = client.get(path)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "try again" in refused.get_data(as_text=True)


# What a client is told when over budget, and what the limits cost while Redis hangs.

def test_a_refusal_names_the_limit_and_the_wait_until_the_window_ends(app_config):
    with separate_app({**app_config, "RATE_LIMIT_INGEST": "1 per second",
                       "RATE_LIMIT_RECALCULATE": "2 per hour"}) as limited_app:
        client = limited_app.test_client()
        assert [client.post("/api/metrics").status_code for _ in range(2)] == [202, 202]
        hourly = client.post("/api/metrics")
        assert hourly.status_code == 429
        assert hourly.get_json()["error"]["message"] == "rate limit of 2 per 1 hour exceeded; retry later"
        assert 3590 <= int(hourly.headers["Retry-After"]) <= 3600
        assert client.post("/api/event", json=EVENT).status_code == 201
        second = client.post("/api/event", json=EVENT)
        if second.status_code == 429:  # (unless the one-second window ended in between)
            assert second.headers["Retry-After"] == "1"
            assert second.get_json()["error"]["message"] == "rate limit of 1 per 1 second exceeded; retry later"


def test_requests_without_a_budget_pass_when_budgets_are_set(limited):
    client = limited.test_client()
    for _ in range(5):
        assert client.get("/healthz").status_code == 200
    assert client.get("/api/metrics/jobs/no-such-job").status_code == 404


def test_a_sign_in_without_a_user_name_is_refused_and_delayed_apart_from_every_name(app_config):
    config = {**app_config, "ACCESS_CONTROL": "on", "API_TOKENS_FULL": "full-token", "ADMIN_USERNAME": "ops",
              "ADMIN_PASSWORD_HASH": generate_password_hash("right", "pbkdf2:sha256:1000"),
              "RATE_LIMIT_LOGIN": "100 per minute", "SIGN_IN_FREE_FAILURES": 2}
    with separate_app(config) as guarded:
        client = guarded.test_client()
        token = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/login").get_data(as_text=True))[1]

        def attempt(**form: str) -> int:
            return client.post("/login", data={"password": "wrong", "csrf_token": token, **form}).status_code

        assert [attempt(), attempt()] == [401, 401]
        assert attempt(username="XXXX") == 401
        assert attempt() == 429


class SilentRedis:
    """Accepts connections and never answers: a Redis that hangs."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"

    def _accept(self) -> None:
        while True:
            try:
                self.connections.append(self.listener.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
        for connection in self.connections:
            connection.close()


def test_a_hung_redis_delays_ingestion_once_by_the_limiter_timeout_and_the_budget_still_holds(app_config, caplog):
    """Ingestion's budget is counted in the process: a hung Redis costs one read of the shared count (bounded
    by RATE_LIMIT_REDIS_TIMEOUT_SECONDS), is then left alone for REDIS_BREAKER_SECONDS, and the limit holds."""
    silent = SilentRedis()
    config = {**app_config, "REDIS_URL": silent.url, "RATE_LIMIT_INGEST": "2 per hour",
              "RATE_LIMIT_REDIS_TIMEOUT_SECONDS": 0.2, "REDIS_BREAKER_SECONDS": 60}
    try:
        with separate_app(config) as hung:
            client = hung.test_client()
            statuses: list[int] = []

            def post_events() -> None:
                for _ in range(3):
                    statuses.append(client.post("/api/event", json=EVENT).status_code)

            caplog.set_level(logging.WARNING, logger="app.runtime.budget_counts")
            worker = threading.Thread(target=post_events, daemon=True)
            worker.start()
            worker.join(timeout=10)
            assert not worker.is_alive(), "a request waited for Redis beyond RATE_LIMIT_REDIS_TIMEOUT_SECONDS"
            assert statuses == [201, 201, 429]
            asked = len(silent.connections)
            assert [client.post("/api/event", json=EVENT).status_code for _ in range(3)] == [429, 429, 429]
            assert len(silent.connections) == asked, "Redis was asked again while it was known to be failing"
            warnings = [r.getMessage() for r in caplog.records if r.name == "app.runtime.budget_counts"]
            assert warnings == ["rate limit counts not shared while Redis is unavailable: TimeoutError"]
    finally:
        silent.close()


# Controls that use Redis, with Redis down and hung (issue 21, class 1): none of them fails open.

@pytest.fixture(params=["down", "hung"])
def broken_redis(request, tmp_path):
    """The URL of a Redis that is down (nothing listens) or hung (accepts, never answers)."""
    if request.param == "down":
        own = start_redis(tmp_path / "valkey")
        own.stop()
        yield own.url
        return
    silent = SilentRedis()
    yield silent.url
    silent.close()


def test_without_redis_every_sign_in_gets_the_same_503_before_its_password_is_checked(app_config, broken_redis):
    config = {**app_config, "REDIS_URL": broken_redis, "ACCESS_CONTROL": "on", "API_TOKENS_FULL": "full-token",
              "ADMIN_USERNAME": "ops", "ADMIN_PASSWORD_HASH": generate_password_hash("right", "pbkdf2:sha256:1000"),
              "RATE_LIMIT_REDIS_TIMEOUT_SECONDS": 0.2, "REDIS_BREAKER_SECONDS": 60}
    with separate_app(config) as guarded:
        client = guarded.test_client()
        token = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/login").get_data(as_text=True))[1]
        answers = set()
        for password in ["wrong"] * 30 + ["right"] + ["wrong"] * 5 + ["right"]:
            response = client.post("/login", data={"username": "ops", "password": password, "csrf_token": token})
            answers.add((response.status_code, response.get_data(as_text=True)))
        assert len(answers) == 1, "a wrong and a right password were told apart while Redis was away"
        status, _page = answers.pop()
        assert status == 503


def test_without_redis_recalculation_is_refused_not_unbudgeted(app, app_config, broken_redis):
    config = {**app_config, "REDIS_URL": broken_redis, "RATE_LIMIT_RECALCULATE": "1 per minute",
              "RATE_LIMIT_REDIS_TIMEOUT_SECONDS": 0.2, "REDIS_BREAKER_SECONDS": 60}
    with separate_app(config) as without:
        client = without.test_client()
        for _ in range(3):
            refused = client.post("/api/metrics")
            assert refused.status_code == 503 and refused.headers["Retry-After"]
        assert refused.get_json()["error"]["code"] in ("budget_unchecked", "unavailable")


def test_without_redis_the_ingest_and_read_budgets_still_hold_in_each_process(app, app_config, broken_redis):
    config = {**app_config, "REDIS_URL": broken_redis, "RATE_LIMIT_INGEST": "2 per hour",
              "RATE_LIMIT_READ": "2 per hour", "RATE_LIMIT_REDIS_TIMEOUT_SECONDS": 0.2, "REDIS_BREAKER_SECONDS": 60}
    with separate_app(config) as without:
        client = without.test_client()
        assert [client.post("/api/event", json=EVENT).status_code for _ in range(3)] == [201, 201, 429]
        assert [client.get("/api/events").status_code for _ in range(3)] == [200, 200, 429]


# A batch is charged by its events (issue 21, class 6).

def test_a_batch_spends_the_ingest_budget_one_unit_per_event(app, app_config):
    with separate_app({**app_config, "RATE_LIMIT_INGEST": "10 per hour"}) as limited_app:
        client = limited_app.test_client()
        assert client.post("/api/events/batch", json={"events": [EVENT] * 6}).status_code == 200
        refused = client.post("/api/events/batch", json={"events": [EVENT] * 5})  # 6 + 5 > 10: none stored
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert count_rows(app, "events") == 6
        # the refused request still cost one, as any refused request does: 3 events fill the budget
        assert client.post("/api/events/batch", json={"events": [EVENT] * 3}).status_code == 200
        assert client.post("/api/event", json=EVENT).status_code == 429
        too_large = limited_app.test_client()
        too_large.environ_base["REMOTE_ADDR"] = "10.8.0.1"
        answer = too_large.post("/api/events/batch", json={"events": [EVENT] * 11})
        assert answer.status_code == 413 and answer.get_json()["error"]["code"] == "batch_over_budget"
        assert "Retry-After" not in answer.headers  # waiting cannot help
        assert answer.get_json()["error"]["message"] == ("11 events are more than the rate limit of 10 per 1 hour; "
                                                         "send smaller batches")
    assert count_rows(app, "events") == 9
