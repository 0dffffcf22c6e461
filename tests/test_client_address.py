"""The client address rate limits key on, through compose's real nginx in front of the real web server.

nginx replaces any X-Forwarded-For the client sent with the address it sees,
and the app (TRUSTED_PROXIES=1, as compose sets it) believes that one hop: so
clients behind the proxy get a budget each, and a forged header buys nothing.
Skipped, like tests/test_proxy.py whose servers it borrows, without nginx.
"""
from __future__ import annotations

import http.client
import json

import pytest

from tests.test_proxy import NGINX, web, proxy  # noqa: F401  (fixtures)

pytestmark = pytest.mark.skipif(NGINX is None, reason="no nginx binary: `apt-get install nginx` (.ci/run does)")

EVENT = json.dumps({"user_id": 1, "action": "page_view"}).encode()


@pytest.fixture
def app_config(app_config):
    """What the borrowed web server runs with: compose's one trusted hop and a small ingest budget."""
    return {**app_config, "TRUSTED_PROXIES": 1, "RATE_LIMIT_INGEST": "2 per minute"}


def post_event(port: int, source: str, forwarded_for: str | None = None) -> int:
    """POST an event from a loopback address of our choosing (all of 127.0.0.0/8 is this host)."""
    headers = {"Content-Type": "application/json"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        connection.request("POST", "/api/event", body=EVENT, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_each_client_behind_the_proxy_has_its_own_budget_and_cannot_forge_another(proxy):  # noqa: F811
    spoofed = [post_event(proxy, "127.0.0.3", forwarded_for=f"203.0.113.{n}") for n in range(3)]
    assert spoofed == [201, 201, 429]
    assert post_event(proxy, "127.0.0.4") == 201
