"""API tokens: ingest-only and full access, and the start-up checks of production mode."""
from __future__ import annotations

import logging

import pytest
from werkzeug.security import check_password_hash

from app import create_app
from app.core.settings import ConfigError
from tests.helpers import count_rows, separate_app

INGEST, FULL = "ingest-secret-1", "full-secret-2"
EVENT = {"user_id": 1, "action": "page_view"}


@pytest.fixture
def guarded(app, app_config):
    """An app with tokens configured, on the same (freshly emptied) database as `app`."""
    with separate_app({**app_config, "API_TOKENS_INGEST": f"other, {INGEST}", "API_TOKENS_FULL": FULL,
                       "ADMIN_PASSWORD_HASH": "scrypt:dummy"}) as app:
        yield app


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_missing_or_wrong_token_is_401_with_the_envelope(guarded, app):
    client = guarded.test_client()
    for headers in ({}, bearer("nope"), {"Authorization": f"Basic {FULL}"}, bearer("")):
        response = client.post("/api/event", json=EVENT, headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'
        error = response.get_json()["error"]
        assert (error["code"], error["message"]) == (
            "unauthorized", "send a valid API token as `Authorization: Bearer <token>`")
    assert client.get("/api/events").status_code == 401
    assert count_rows(app, "events") == 0


def test_a_token_is_read_after_the_first_space_however_it_is_spaced(guarded):
    """`Bearer` and the token split at the first space; spaces around the token are not part of it."""
    client = guarded.test_client()
    for header in (f"Bearer  {FULL}", f"bearer {FULL} ", f"Bearer \t{FULL}"):
        assert client.get("/api/events", headers={"Authorization": header}).status_code == 200, header


def test_an_ingest_token_may_only_record_events(guarded, app):
    client = guarded.test_client()
    assert client.post("/api/event", json=EVENT, headers=bearer(INGEST)).status_code == 201
    assert client.post("/api/events/batch", json={"events": [EVENT]}, headers=bearer(INGEST)).status_code == 200
    for method, path in (("get", "/api/events"), ("get", "/api/metrics"), ("post", "/api/metrics")):
        response = getattr(client, method)(path, headers=bearer(INGEST))
        assert response.status_code == 403
        error = response.get_json()["error"]
        assert (error["code"], error["message"]) == ("forbidden", "this token may only record events")
    assert count_rows(app, "events") == 2


def test_a_full_token_may_do_everything(guarded):
    client = guarded.test_client()
    assert client.post("/api/event", json=EVENT, headers=bearer(FULL)).status_code == 201
    assert len(client.get("/api/events", headers=bearer(FULL)).get_json()["events"]) == 1
    assert client.get("/api/metrics", headers=bearer(FULL)).status_code == 200


def test_tokens_never_reach_the_logs(guarded, caplog):
    client = guarded.test_client()
    with caplog.at_level(logging.DEBUG):
        client.post("/api/event", json=EVENT, headers=bearer(FULL))
        client.get("/api/events", headers=bearer(INGEST))
        client.get("/api/events", headers=bearer("wrong-token-3"))
    logged = caplog.text
    for token in (FULL, INGEST, "wrong-token-3"):
        assert token not in logged


def test_open_when_no_credentials_are_configured_outside_production(client):
    assert client.post("/api/event", json=EVENT).status_code == 201


def test_production_refuses_to_start_without_credentials(app_config):
    production = {**app_config, "APP_ENV": "production", "SECRET_KEY": "a-real-secret"}
    with pytest.raises(ConfigError, match="API_TOKENS_FULL"):
        create_app(production)
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app({**production, "SECRET_KEY": "dev-insecure-secret", "ACCESS_CONTROL": "off"})
    with separate_app({**production, "ACCESS_CONTROL": "off"}) as app:
        assert app.test_client().get("/api/events").status_code == 200


def test_hash_password_command_prints_a_usable_hash(runner):
    result = runner.invoke(args=["hash-password", "--password", "s3cret"])
    assert result.exit_code == 0
    assert check_password_hash(result.output.strip(), "s3cret")
