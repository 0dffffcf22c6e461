"""The original service's clients, unchanged: its HTTPie collection, its field names, CORS for its page.

The collection's four requests are written out here exactly as the original
`httpie-collection-tracking-service` defines them (no headers at all: the
create request's JSON body goes without a Content-Type), and sent over a real
socket so no client library adds a header of its own. The browser side (the
original's React page on another origin) is in tests/test_browser.py.
"""
from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from tests.helpers import count_rows, separate_app

PAGE_ORIGIN = "http://localhost:3000"
OTHER_ORIGIN = "http://evil.example"
TOKEN = "cors-full-token"
EVENT = {"user_id": 321, "action": "test_action", "metadata": {"page": "/hello/world"}}

# The original collection's requests: (name, method, path with its query parameters, body, headers).
COLLECTION = [
    ("Create Event", "POST", "/api/event",
     b'{\n  "user_id": 321,\n  "action": "test_action",\n  "metadata": {\n    "page": "/hello/world"\n  }\n}', []),
    ("List events", "GET",
     "/api/events?user_id=321&from=2025-10-23T13:07:18.392Z&till=2025-10-25T22:07:18.392Z", None, []),
    ("Calculate metrics", "POST", "/api/metrics", b"", []),
    ("List metrics", "GET",
     "/api/metrics?user_id=321&from=2025-10-23T13:07:18.392Z&till=2025-10-25T22:07:18.392Z", None, []),
]


@pytest.fixture
def api_url(app: Flask) -> Iterator[tuple[str, int]]:
    """The test app served on a free port of 127.0.0.1, for requests made byte by byte."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield "127.0.0.1", httpd.server_port
    httpd.shutdown()
    thread.join(timeout=10)
    httpd.server_close()


def send(address: tuple[str, int], method: str, path: str, body: bytes | None,
         headers: list[tuple[str, str]]) -> tuple[int, bytes]:
    """One request with only the headers given (plus Host, and Content-Length for a body)."""
    connection = http.client.HTTPConnection(*address, timeout=30)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_the_original_collection_gets_2xx_for_each_of_its_four_requests(api_url, app):
    statuses = {name: send(api_url, method, path, body, headers)[0]
                for name, method, path, body, headers in COLLECTION}
    assert all(200 <= status < 300 for status in statuses.values()), statuses
    assert statuses == {"Create Event": 201, "List events": 200, "Calculate metrics": 202, "List metrics": 200}
    assert count_rows(app, "events") == 1


def test_events_carry_the_original_names_with_the_same_values(client):
    created = client.post("/api/event", json={**EVENT, "occurred_at": "2025-10-23T13:07:00.5Z"}).get_json()
    assert created["uuid"] == created["id"]
    assert created["occured_at"] == created["occurred_at"] == "2025-10-23T13:07:00.500000Z"
    listed = client.get("/api/events?user_id=321").get_json()["events"]
    assert [(e["uuid"], e["occured_at"]) for e in listed] == [(created["id"], created["occurred_at"])]
    again = client.post("/api/event", json={**EVENT, "id": created["id"], "occurred_at": "2025-10-23T13:07:00.5Z"})
    assert again.status_code == 200 and again.get_json()["uuid"] == created["id"]
    batch = client.post("/api/events/batch", json={"events": [EVENT]}).get_json()
    assert [item["uuid"] for item in batch["events"]] == [item["id"] for item in batch["events"]]


@pytest.mark.parametrize("content_type", [None, "text/plain", "text/plain; charset=utf-8", "application/json"])
def test_a_json_body_is_read_as_json_without_a_content_type_or_as_plain_text(client, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/api/event", data=b'{"user_id": 321, "action": "test_action"}', headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["user_id"] == 321


@pytest.mark.parametrize(("content_type", "body", "status", "code"), [
    ("application/x-www-form-urlencoded", b"user_id=1&action=a", 415, "unsupported_media_type"),
    ("application/xml", b"<event/>", 415, "unsupported_media_type"),
    ("text/csv", b'{"user_id": 1, "action": "a"}', 415, "unsupported_media_type"),
    ("text/plain", b"user_id=1", 400, "malformed_json"),
    (None, b"not json", 400, "malformed_json"),
])
def test_other_declared_types_are_415_and_text_that_is_not_json_is_400(client, app, content_type, body, status, code):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/api/event", data=body, headers=headers)
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code
    assert count_rows(app, "events") == 0


# --- CORS ---

def preflight(client: Any, path: str, origin: str, method: str = "POST", headers: str = "content-type") -> Any:
    return client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": method,
                                         "Access-Control-Request-Headers": headers})


@pytest.fixture
def cors_app(app: Flask, app_config: dict[str, object]) -> Iterator[Flask]:
    """Two allowed origins, access control on and a recording budget of one event a minute."""
    with separate_app({**app_config, "CORS_ALLOWED_ORIGINS": f" {PAGE_ORIGIN} ; http://127.0.0.1:3000;",
                       "API_TOKENS_FULL": TOKEN, "ADMIN_PASSWORD_HASH": "scrypt:unused",
                       "RATE_LIMIT_INGEST": "1 per minute"}) as cors:
        yield cors


def test_a_preflight_from_an_allowed_origin_is_answered_before_auth_and_rate_limits(cors_app):
    client = cors_app.test_client()
    bearer = {"Authorization": f"Bearer {TOKEN}", "Origin": PAGE_ORIGIN}
    assert client.post("/api/event", json=EVENT, headers=bearer).status_code == 201
    assert client.post("/api/event", json=EVENT, headers=bearer).status_code == 429, "the budget is spent"
    answer = preflight(client, "/api/event", PAGE_ORIGIN, headers="authorization, content-type, x-request-id")
    assert answer.status_code == 204, answer.get_data(as_text=True)
    assert answer.headers["Access-Control-Allow-Origin"] == PAGE_ORIGIN
    assert answer.headers["Access-Control-Allow-Credentials"] == "true"
    assert answer.headers["Access-Control-Allow-Methods"] == "GET, POST"
    assert answer.headers["Access-Control-Allow-Headers"] == "Content-Type, Authorization, X-Request-ID"
    assert answer.headers["Access-Control-Max-Age"] == "300"
    assert "Origin" in answer.headers["Vary"]


def test_answers_to_an_allowed_origin_echo_it_and_expose_our_headers(cors_app):
    client = cors_app.test_client()
    for headers in ({"Authorization": f"Bearer {TOKEN}"}, {}):  # the 401 too, so the page can read why
        response = client.get("/api/events", headers={"Origin": "http://127.0.0.1:3000", **headers})
        assert response.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:3000"
        assert response.headers["Access-Control-Allow-Credentials"] == "true"
        assert response.headers["Access-Control-Expose-Headers"] == "X-Request-ID, Retry-After"
        assert "Origin" in response.headers["Vary"]
    assert client.get("/api/events", headers={"Origin": PAGE_ORIGIN}).status_code == 401


def test_unlisted_origins_get_no_cors_headers(cors_app):
    client = cors_app.test_client()
    for origin in (OTHER_ORIGIN, "http://localhost:3001", "http://LOCALHOST:3000", "null"):
        answer = preflight(client, "/api/events", origin, method="GET")
        assert answer.status_code == 401, "not answered as a preflight: it needs a token like any call"
        response = client.get("/api/events", headers={"Origin": origin, "Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200
        for answered in (answer, response):
            assert not [name for name in answered.headers.keys() if name.startswith("Access-Control-")]
            assert "Origin" in answered.headers["Vary"]


def test_cors_is_only_on_the_api(cors_app):
    client = cors_app.test_client()
    for path in ("/healthz", "/events"):
        response = client.get(path, headers={"Origin": PAGE_ORIGIN})
        assert "Access-Control-Allow-Origin" not in response.headers


def test_without_configured_origins_there_is_no_cors_at_all(app):
    client = app.test_client()
    response = client.get("/api/events", headers={"Origin": PAGE_ORIGIN})
    assert response.status_code == 200
    assert not [name for name in response.headers.keys() if name.startswith("Access-Control-")]
    assert "Origin" not in response.headers.get("Vary", "")


@pytest.mark.parametrize("value", ["*", "localhost:3000", "http://localhost:3000/", "http://localhost:3000/app",
                                   "http://localhost:3000,http://localhost:4000"])
def test_a_malformed_origin_stops_the_start_naming_the_setting(app_config, value):
    from app import create_app
    from app.core.settings import ConfigError

    with pytest.raises(ConfigError, match="CORS_ALLOWED_ORIGINS"):
        create_app({**app_config, "CORS_ALLOWED_ORIGINS": value})

