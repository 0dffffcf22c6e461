"""Exports that clients hold open never take every thread from writes (issue 21, class 3).

The real web server (one worker, four threads, the default bounds: two exports per process, one per
client), a table large enough that an export the client does not read stays in flight, and clients
with tokens of their own that open exports and stop reading.
"""
from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from werkzeug.security import generate_password_hash

from tests.helpers import answers_healthz, free_port, start_web, stop, wait_until
from tests.test_events_export import insert_events

pytestmark = pytest.mark.seconds

TOKENS = [f"full-token-{n}" for n in range(4)]
INGEST = "ingest-token"
EVENTS = 200_000  # about 25 MB of CSV: far more than the socket and pipe buffers hold


@pytest.fixture
def web(app, app_config, tmp_path) -> Iterator[int]:
    insert_events(app, EVENTS)
    port = free_port()
    config = {**app_config, "PORT": port, "WEB_WORKERS": 1, "WEB_THREADS": 4, "ACCESS_CONTROL": "on",
              "API_TOKENS_FULL": ",".join(TOKENS), "API_TOKENS_INGEST": INGEST, "SECRET_KEY": "a-real-secret",
              "ADMIN_PASSWORD_HASH": generate_password_hash("x", "pbkdf2:sha256:1000"), "WEB_BODY_TIMEOUT": 60}
    log_path = tmp_path / "web.log"
    process = start_web(config, log_path)
    try:
        wait_until(lambda: answers_healthz(port), timeout=30, interval=0.1, what="the web server answers")
        yield port
    finally:
        stop(process, log_path)


def open_export(port: int, token: str) -> tuple[socket.socket, int, dict[str, str]]:
    """Ask for the whole export and read only the status line and headers; the socket stays open, unread."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(f"GET /api/events/export HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"
                 .encode())
    response = http.client.HTTPResponse(sock)
    response.begin()
    return sock, response.status, {name.lower(): value for name, value in response.getheaders()}


def test_exports_held_open_leave_threads_for_writes(web):
    with ExitStack() as held:
        statuses = []
        for token in TOKENS:
            sock, status, headers = open_export(web, token)
            held.callback(sock.close)
            statuses.append((status, headers.get("retry-after")))
        # two stream (one per client, two per process); the others are told when to come back
        assert statuses[:2] == [(200, None), (200, None)]
        assert [status for status, _ in statuses[2:]] == [503, 503]
        assert all(int(retry) >= 1 for _, retry in statuses[2:])
        again, status, headers = open_export(web, TOKENS[0])
        held.callback(again.close)
        assert status == 429 and int(headers["retry-after"]) >= 1
        # ...while another client's writes still find a thread
        for n in range(5):
            connection = http.client.HTTPConnection("127.0.0.1", web, timeout=10)
            connection.request("POST", "/api/event", body=json.dumps({"user_id": 900 + n, "action": "click"}),
                               headers={"Content-Type": "application/json", "Authorization": f"Bearer {INGEST}"})
            assert connection.getresponse().status == 201
            connection.close()
    # the clients went away: their slots are free again

    def served() -> bool:
        sock, status, _headers = open_export(web, TOKENS[3])
        sock.close()
        return status == 200

    wait_until(served, timeout=30, interval=0.5, what="an export is served once the held ones are closed")
