"""What the app itself answers under a real gunicorn, without the proxy in front.

Compose puts nginx before gunicorn, but `make run`, a misconfigured
deployment or a request from inside the network reaches gunicorn directly;
the app must keep its own limits there. Here: a chunked body (no
Content-Length, so gunicorn cannot refuse it up front) over MAX_BODY_BYTES.
"""
from __future__ import annotations

import http.client
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import answers_healthz, count_rows, free_port, start_gunicorn, wait_until

ROOT = Path(__file__).resolve().parent.parent
MAX_BODY_BYTES = 64 * 1024  # small, so the test sends little


@pytest.fixture
def gunicorn(app, app_config, tmp_path) -> Iterator[int]:
    """gunicorn with the app's config (one worker, two threads); yields its port."""
    port = free_port()
    settings = {**app_config, "PORT": port, "GUNICORN_WORKERS": 1, "GUNICORN_THREADS": 2,
                "MAX_BODY_BYTES": MAX_BODY_BYTES}
    log_path = tmp_path / "gunicorn.log"
    process = start_gunicorn(settings, log_path)
    try:
        wait_until(lambda: _healthy(port, process), timeout=30, interval=0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)
        print(log_path.read_text())


def _healthy(port: int, process: subprocess.Popen) -> bool:
    assert process.poll() is None, "gunicorn exited"
    return answers_healthz(port)


def post_chunked(port: int, path: str, body: bytes, chunk: int = 8192) -> tuple[int, dict]:
    """POST `body` with Transfer-Encoding: chunked; the status and the JSON answer."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + chunk]), body[i:i + chunk])
                      for i in range(0, len(body), chunk))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(head + chunks + b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the end; the answer is waiting
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read())


def batch_of(size: int) -> bytes:
    """A valid batch body of about `size` bytes (events padded with metadata)."""
    event = {"user_id": 1, "action": "chunked", "metadata": {"pad": "x" * 900}}
    count = max(1, size // len(json.dumps(event)))
    return json.dumps({"events": [event] * count}).encode()


def test_a_chunked_body_over_the_limit_is_413_and_nothing_is_stored(app, gunicorn):
    status, answer = post_chunked(gunicorn, "/api/events/batch", batch_of(2 * MAX_BODY_BYTES))
    assert status == 413, answer
    assert answer["error"]["code"] == "payload_too_large"
    assert answer["error"]["message"] == f"request body is larger than {MAX_BODY_BYTES} bytes"
    assert count_rows(app, "events") == 0

    body = batch_of(MAX_BODY_BYTES - 2000)  # within the limit, chunked: accepted
    assert len(body) <= MAX_BODY_BYTES
    status, answer = post_chunked(gunicorn, "/api/events/batch", body)
    assert status == 200 and answer["created"] == count_rows(app, "events") > 0
