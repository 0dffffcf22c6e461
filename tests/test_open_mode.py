"""An open service (access control off) and the web pages its developer visits (issue 21, class 7).

With no token to hold them back, a hostile page could post events with a `text/plain` form (no preflight), or
rebind its own name to 127.0.0.1 and read everything with its own `Host`. Neither gets through.
"""
from __future__ import annotations

import pytest

from tests.helpers import count_rows, separate_app

EVENT = '{"user_id": 7, "action": "page_view"}'


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},  # a sandboxed frame or a file: page
    {"Origin": "http://localhost.evil.example"},
    {"Sec-Fetch-Site": "cross-site"},  # a browser that sent no Origin
])
@pytest.mark.parametrize("path", ["/api/event", "/api/metrics", "/metrics/recalculate"])
def test_a_page_of_another_site_changes_nothing(client, app, headers, path):
    response = client.post(path, data=EVENT, headers={"Content-Type": "text/plain", **headers})
    assert response.status_code == 403
    assert count_rows(app, "events") == 0 and count_rows(app, "calculation_runs") == 0
    if path.startswith("/api/"):
        assert response.get_json()["error"]["code"] == "cross_site"


def test_backends_this_site_and_allowed_origins_still_write(client, app, app_config):
    json = {"Content-Type": "application/json"}
    assert client.post("/api/event", data=EVENT, headers=json).status_code == 201  # curl, HTTPie, clients
    same = client.post("/api/event", data=EVENT, headers={**json, "Origin": "http://localhost",
                                                           "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 201
    default_port = client.post("/api/event", data=EVENT, headers={**json, "Origin": "http://localhost",
                                                                   "Host": "localhost:80"})
    assert default_port.status_code == 201  # the scheme's default port, written or not, is the same origin
    with separate_app({**app_config, "CORS_ALLOWED_ORIGINS": "http://localhost:3000"}) as cors_app:
        allowed = cors_app.test_client().post("/api/event", data=EVENT,
                                              headers={**json, "Origin": "http://localhost:3000"})
        assert allowed.status_code == 201
    assert count_rows(app, "events") == 4


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.1.nip.io:8080"])
def test_an_open_service_answers_only_to_its_own_names(client, host):
    response = client.get("/api/events", headers={"Host": host})
    assert response.status_code == 400
    assert "events" not in response.get_json()
    assert client.get("/events", headers={"Host": host}).status_code == 400


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1:8080"])
def test_its_loopback_names_are_served(client, host):
    assert client.get("/api/events", headers={"Host": host}).status_code == 200


def test_a_configured_name_is_served_and_access_control_lifts_the_check(app_config):
    with separate_app({**app_config, "ALLOWED_HOSTS": "tracking.lan"}) as named:
        client = named.test_client()
        assert client.get("/api/events", headers={"Host": "tracking.lan:8080"}).status_code == 200
        assert client.get("/api/events", headers={"Host": "other.lan"}).status_code == 400
    guarded = {**app_config, "ACCESS_CONTROL": "on", "API_TOKENS_FULL": "full-token",
               "ADMIN_PASSWORD_HASH": "pbkdf2:sha256:1000$x$y", "SECRET_KEY": "a-real-secret"}
    with separate_app(guarded) as closed:  # tokens are no ambient credential: any name the proxy passes
        response = closed.test_client().get("/api/events", headers={"Host": "tracking.example",
                                                                    "Authorization": "Bearer full-token"})
        assert response.status_code == 200


def test_with_access_control_on_tokens_decide_and_a_rewritten_host_breaks_nothing(app, app_config):
    """Tokens and the dashboard's CSRF token already hold back other sites' pages: the Origin is not judged,
    so a page allowed a token (or a proxy that rewrites Host) works as before."""
    guarded = {**app_config, "ACCESS_CONTROL": "on", "API_TOKENS_FULL": "full-token",
               "ADMIN_PASSWORD_HASH": "pbkdf2:sha256:1000$x$y", "SECRET_KEY": "a-real-secret"}
    with separate_app(guarded) as closed:
        response = closed.test_client().post("/api/event", data=EVENT, headers={
            "Content-Type": "application/json", "Authorization": "Bearer full-token",
            "Origin": "https://tracking.example", "Host": "web:8080"})
        assert response.status_code == 201


def test_behind_a_trusted_proxy_an_open_service_judges_its_own_host_header(app_config):
    """A page rebound to 127.0.0.1, where a trusted proxy also connects from, cannot pass for an allowed host
    by naming one in X-Forwarded-Host; the proxy's forwarded address and scheme still count."""
    with separate_app({**app_config, "TRUSTED_PROXIES": 1}) as proxied:
        client = proxied.test_client()  # REMOTE_ADDR 127.0.0.1
        rebound = client.get("/api/events", headers={"Host": "evil.example:8080", "X-Forwarded-Host": "localhost"})
        assert rebound.status_code == 400
        forwarded = client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
        assert forwarded.headers["Strict-Transport-Security"]
