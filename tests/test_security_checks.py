"""Security checks in the uncomfortable cases: a brand-new client, several tokens behind one address.

Elsewhere CSRF is only tried with a session that already holds its token,
and rate limits only told apart by address. The cross-site request on an
open dashboard comes from a browser with no session at all, and many API
clients share one address (a NAT, a proxy), each with its own token.
"""
from __future__ import annotations

import pytest

from app.extensions import runtime, settings
from app.jobs.queue import calculation_queue
from tests.helpers import csrf_token_of, separate_app

HTMX = {"HX-Request": "true"}
EVENT = {"user_id": 1, "action": "page_view"}
TOKEN_A, TOKEN_B = "token-of-backend-a", "token-of-backend-b"


def queued(app) -> int:
    with app.app_context():
        return len(calculation_queue(runtime().background_redis, settings().redis_namespace))


@pytest.mark.parametrize("sent", [
    {},
    {"headers": {**HTMX, "X-CSRF-Token": ""}},
    {"data": {"csrf_token": ""}},
    {"headers": {**HTMX, "X-CSRF-Token": "made-up"}},
], ids=["nothing", "empty header", "empty form field", "made-up token"])
def test_a_brand_new_client_cannot_press_recalculate(app, sent):
    stranger = app.test_client()  # no cookie, so no session and no token of its own
    response = stranger.post("/metrics/recalculate", **sent)
    assert response.status_code == 400
    assert "was not sent from this dashboard" in response.get_data(as_text=True)
    assert queued(app) == 0


def test_another_sessions_token_does_not_open_a_new_session(app, client):
    token = csrf_token_of(client)
    stranger = app.test_client()
    assert stranger.post("/metrics/recalculate", headers={**HTMX, "X-CSRF-Token": token}).status_code == 400
    assert queued(app) == 0
    assert client.post("/metrics/recalculate", headers={**HTMX, "X-CSRF-Token": token}).status_code == 200
    assert queued(app) == 1


@pytest.fixture
def tokens(app, app_config):
    with separate_app({**app_config, "API_TOKENS_FULL": f"{TOKEN_A},{TOKEN_B}", "ADMIN_PASSWORD_HASH": "scrypt:dummy",
                       "RATE_LIMIT_INGEST": "3 per minute", "RATE_LIMIT_RECALCULATE": "1 per minute"}) as guarded:
        yield guarded


def bearer(token: str, address: str = "127.0.0.1") -> dict:
    return {"headers": {"Authorization": f"Bearer {token}"}, "environ_base": {"REMOTE_ADDR": address}}


def test_two_tokens_behind_one_address_each_have_their_own_budget(tokens):
    client = tokens.test_client()
    assert [client.post("/api/event", json=EVENT, **bearer(TOKEN_A)).status_code for _ in range(4)] == [201] * 3 + [429]
    assert [client.post("/api/event", json=EVENT, **bearer(TOKEN_B)).status_code for _ in range(4)] == [201] * 3 + [429]
    assert client.post("/api/metrics", **bearer(TOKEN_A)).status_code == 202
    assert client.post("/api/metrics", **bearer(TOKEN_B)).status_code == 202
    assert client.post("/api/metrics", **bearer(TOKEN_B)).status_code == 429


def test_one_token_keeps_its_budget_from_any_address(tokens):
    client = tokens.test_client()
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        assert client.post("/api/event", json=EVENT, **bearer(TOKEN_A, address)).status_code == 201
    assert client.post("/api/event", json=EVENT, **bearer(TOKEN_A, "10.0.0.4")).status_code == 429


def test_budgets_with_the_same_rate_stay_apart(app_config):
    with separate_app({**app_config, "RATE_LIMIT_INGEST": "2 per minute", "RATE_LIMIT_RECALCULATE": "2 per minute"}) as same:
        client = same.test_client()
        assert [client.post("/api/event", json=EVENT).status_code for _ in range(3)] == [201, 201, 429]
        assert client.post("/api/metrics").status_code == 202, "recording spent the recalculation budget"


def test_reading_a_rate_limited_page_spends_no_budget(app_config):
    with separate_app({**app_config, "API_TOKENS_FULL": TOKEN_A, "ADMIN_PASSWORD_HASH": "scrypt:dummy",
                       "RATE_LIMIT_LOGIN": "2 per minute"}) as guarded:
        client = guarded.test_client()
        assert [client.get("/login").status_code for _ in range(4)] == [200] * 4
