"""The web server itself (`python -m app.serving`: granian and the front), straight, without the proxy.

Compose puts nginx before it, but `make run`, a careless deployment or a
request from inside the network reaches it directly: it must keep its own
limits and timeouts there, and keep what an operator relies on (a hung
worker replaced, workers recycled, Prometheus' files tidied, one log line
per request with its id).
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.helpers import answers_healthz, count_rows, free_port, start_web, wait_until

ROOT = Path(__file__).resolve().parent.parent
MAX_BODY_BYTES = 64 * 1024  # small, so the test sends little
BODY_TIMEOUT = 2  # seconds
HEADER_TIMEOUT = 2  # seconds

pytestmark = pytest.mark.seconds


class Web:
    """A running web server: its port, master process and log."""

    def __init__(self, process: subprocess.Popen, port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.log_path = log_path

    def workers(self) -> list[int]:
        return [child.pid for child in psutil.Process(self.process.pid).children()]

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.startswith("{")]


@pytest.fixture
def server_config(app_config) -> dict[str, Any]:
    return {**app_config, "WEB_WORKERS": 1, "WEB_THREADS": 2, "MAX_BODY_BYTES": MAX_BODY_BYTES,
            "WEB_BODY_TIMEOUT": BODY_TIMEOUT, "WEB_HEADER_TIMEOUT": HEADER_TIMEOUT, "LOG_FORMAT": "json"}


@contextmanager
def serving(config: dict[str, Any], log_path: Path) -> Iterator[Web]:
    port = free_port()
    process = start_web({**config, "PORT": port}, log_path)
    server = Web(process, port, log_path)
    try:
        wait_until(lambda: _healthy(server), timeout=30, interval=0.1, what="the web server answers")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL) if os.getpgid(process.pid) == process.pid else process.kill()
            process.wait()
        print(log_path.read_text())


@pytest.fixture
def web(app, server_config, tmp_path) -> Iterator[Web]:
    """The web server with the test app's settings (one worker, two threads, short timeouts)."""
    with serving(server_config, tmp_path / "web.log") as server:
        yield server


def _healthy(server: Web) -> bool:
    assert server.process.poll() is None, f"the web server exited: {server.log_path.read_text()[-2000:]}"
    return answers_healthz(server.port)


def raw(port: int, data: bytes, timeout: float = 15) -> tuple[int, dict[str, str], bytes]:
    """Send `data` as it is; the answer's status, headers (lower-case names) and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the end; the answer is waiting
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


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


def test_a_chunked_body_over_the_limit_is_413_and_nothing_is_stored(app, web):
    status, answer = post_chunked(web.port, "/api/events/batch", batch_of(2 * MAX_BODY_BYTES))
    assert status == 413, answer
    assert answer["error"]["code"] == "payload_too_large"
    assert answer["error"]["message"] == f"request body is larger than {MAX_BODY_BYTES} bytes"
    assert count_rows(app, "events") == 0

    body = batch_of(MAX_BODY_BYTES - 2000)  # within the limit, chunked: accepted
    assert len(body) <= MAX_BODY_BYTES
    status, answer = post_chunked(web.port, "/api/events/batch", body)
    assert status == 200 and answer["created"] == count_rows(app, "events") > 0


def test_a_declared_body_over_the_limit_is_413_before_a_byte_of_it_is_sent(app, web):
    head = (f"POST /api/events/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {10 * MAX_BODY_BYTES}\r\nConnection: close\r\n\r\n").encode()
    status, _, body = raw(web.port, head)
    assert status == 413
    assert json.loads(body)["error"]["code"] == "payload_too_large"
    assert count_rows(app, "events") == 0


def test_paths_beyond_ascii_reach_the_app_as_wsgi_says(web):
    """Not a 500: the path's bytes reach the app as latin-1 text, which werkzeug decodes as UTF-8."""
    for path in ("/%E2%82%AC", "/api/metrics/jobs/%C3%A9", "/%FF"):
        answered, _, body = raw(web.port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                                .encode())
        assert answered == 404, (path, body)
    _, _, body = raw(web.port, b"GET /api/metrics/jobs/%C3%A9 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert json.loads(body)["error"]["code"] == "not_found"


def test_a_header_name_with_an_underscore_is_not_taken_for_its_dashed_twin(web):
    """X_Request_ID (or X_Forwarded_For) would otherwise land in the same WSGI key as X-Request-ID."""
    _, headers, _ = raw(web.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX_Request_ID: forged-id\r\n"
                                  b"Connection: close\r\n\r\n")
    assert headers["x-request-id"] != "forged-id"
    _, headers, _ = raw(web.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: real-id\r\n"
                                  b"Connection: close\r\n\r\n")
    assert headers["x-request-id"] == "real-id"


def test_headers_over_the_servers_buffer_are_refused_with_431(web):
    status, _, _ = raw(web.port, b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 40_000
                       + b"\r\nConnection: close\r\n\r\n")
    assert status == 431
    assert answers_healthz(web.port)


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl to speak HTTP/2 with")
def test_http2_is_held_to_the_same_header_limit(web):
    def status(*headers: str) -> str:
        return subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--http2-prior-knowledge",
                               *headers, f"http://127.0.0.1:{web.port}/healthz"],
                              capture_output=True, text=True, timeout=30).stdout

    assert status() == "200"
    assert status("-H", "X-Big: " + "a" * 40_000) == "431"


def test_a_body_that_does_not_arrive_in_time_is_408_in_the_envelope_and_nothing_is_stored(app, web):
    body = json.dumps({"user_id": 1, "action": "late_body"}).encode()
    head = (f"POST /api/event HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", web.port), timeout=15) as sock:
        sock.sendall(head + body[:5])  # and the rest never
        response = http.client.HTTPResponse(sock)
        response.begin()
        answer = json.loads(response.read())
    assert response.status == 408
    assert answer["error"] == {"code": "body_timeout", "field": None,
                               "message": f"the request body did not arrive within {BODY_TIMEOUT} seconds"}
    assert count_rows(app, "events") == 0


def test_headers_that_do_not_arrive_in_time_end_the_connection(web):
    with socket.create_connection(("127.0.0.1", web.port), timeout=15) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127")  # and the rest never
        try:
            assert sock.recv(4096) == b""  # closed by the server, not by our 15 s timeout
        except ConnectionResetError:
            pass


@pytest.fixture
def patient_web(app, server_config, tmp_path) -> Iterator[Web]:
    """The web server with the default header and body timeouts, so slow clients stay for the whole test."""
    config = {key: value for key, value in server_config.items() if key not in ("WEB_BODY_TIMEOUT", "WEB_HEADER_TIMEOUT")}
    with serving(config, tmp_path / "web.log") as server:
        yield server


def test_slow_clients_wait_on_the_loop_and_never_hold_the_threads(app, patient_web):
    """Ten times more slow sockets than threads: /healthz and a new event are still answered."""
    port = patient_web.port
    sockets = []
    try:
        for _ in range(10):  # headers that never end
            sock = socket.create_connection(("127.0.0.1", port), timeout=15)
            sock.sendall(b"POST /api/event HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            sockets.append(sock)
        for _ in range(10):  # a body that never ends
            sock = socket.create_connection(("127.0.0.1", port), timeout=15)
            sock.sendall(b"POST /api/event HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n{" % (MAX_BODY_BYTES - 1))
            sockets.append(sock)
        for round_ in range(5):
            for index, sock in enumerate(sockets):
                try:
                    sock.send(b"a")
                except OSError as error:
                    raise AssertionError(f"socket {index} in round {round_}: {error}") from None
            assert answers_healthz(port), f"/healthz did not answer in round {round_}"
        event = json.dumps({"user_id": 7, "action": "beside_slow_clients"}).encode()
        status, _, _ = raw(port, b"POST /api/event HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                                 b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(event), event))
        assert status == 201
        for sock in sockets:  # all still connected: the server did not get out of it by dropping them
            sock.send(b"a")
    finally:
        for sock in sockets:
            sock.close()
    assert count_rows(app, "events") == 1


def test_a_streamed_export_goes_through_the_front_whole(app, web):
    events = [{"user_id": n % 50 + 1, "action": "streamed", "metadata": {"n": n}} for n in range(900)]
    body = json.dumps({"events": events}).encode()
    status, _, answer = raw(web.port, b"POST /api/events/batch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                      b"Content-Type: application/json\r\nConnection: close\r\n"
                                      b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    assert status == 200 and json.loads(answer)["created"] == 900
    status, headers, csv = raw(web.port, b"GET /api/events/export HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                         b"Connection: close\r\n\r\n")
    assert status == 200 and headers["content-type"].startswith("text/csv")
    assert headers.get("transfer-encoding") == "chunked"  # streamed, not built in memory first
    lines = csv.decode().splitlines()
    assert len(lines) == 901 and lines[0].startswith("id,user_id,action")


class StreamingApp:
    """tests/streaming_app.py behind the front, on granian: its port, and how many chunks it has produced."""

    def __init__(self, port: int) -> None:
        self.port = port

    def produced(self) -> int:
        return int(raw(self.port, b"GET /count HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")[2])

    def answers(self) -> bool:
        try:
            self.produced()
            return True
        except OSError:
            return False


@pytest.fixture
def streaming(tmp_path) -> Iterator[StreamingApp]:
    port = free_port()
    log_path = tmp_path / "granian.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "-m", "granian", "--interface", "rsgi", "--host", "127.0.0.1",
                                    "--port", str(port), "--workers", "1", "tests.streaming_app:front"],
                                   cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        app = StreamingApp(port)
        wait_until(app.answers, timeout=30, what="the streaming app answers")
        yield app
    finally:
        process.terminate()
        process.wait(timeout=30)
        print(log_path.read_text())


def test_a_stream_whose_client_left_stops_and_frees_its_thread(streaming):
    """The front stops asking the app for chunks once the client has gone, rather than producing the rest
    (a whole export) for nobody."""
    with socket.create_connection(("127.0.0.1", streaming.port), timeout=15) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    time.sleep(3)  # 200 chunks 10 ms apart would all be produced by now
    assert streaming.produced() < 100


def test_each_request_is_logged_once_with_its_id(web):
    event = json.dumps({"user_id": 3, "action": "logged"}).encode()
    status, headers, _ = raw(web.port, b"POST /api/event HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                                       b"X-Request-ID: trace-42\r\nConnection: close\r\n"
                                       b"Content-Length: %d\r\n\r\n%s" % (len(event), event))
    assert status == 201 and headers["x-request-id"] == "trace-42"
    lines = wait_until(lambda: [line for line in web.log_lines() if line.get("request_id") == "trace-42"],
                       timeout=10, what="the request's log line")
    assert len(lines) == 1
    assert lines[0]["path"] == "/api/event" and lines[0]["status"] == 201 and lines[0]["logger"] == "app.request"


def test_a_hung_worker_is_killed_and_replaced(app, server_config, tmp_path):
    """A worker stopped dead (SIGSTOP: not a thread of it runs) sends no heartbeat: after WEB_TIMEOUT it is
    killed, another takes its place, and its stale live-gauge files go with it."""
    metrics = tmp_path / "prometheus"
    metrics.mkdir()
    config = {**server_config, "WEB_TIMEOUT": 2, "PROMETHEUS_MULTIPROC_DIR": metrics}
    with serving(config, tmp_path / "web.log") as web:
        (hung,) = web.workers()
        live_gauge = metrics / f"gauge_livesum_{hung}.db"
        live_gauge.write_bytes(b"")
        os.kill(hung, signal.SIGSTOP)
        try:
            replaced = wait_until(lambda: [pid for pid in web.workers() if pid != hung], timeout=30,
                                  what="a new worker")
            wait_until(lambda: answers_healthz(web.port), timeout=30, what="the new worker answers")
        finally:
            with suppress(ProcessLookupError):
                os.kill(hung, signal.SIGCONT)
        assert not psutil.pid_exists(hung) or psutil.Process(hung).status() == psutil.STATUS_ZOMBIE
        assert len(replaced) == 1
        assert any(line["msg"] == f"web worker {hung} sent no heartbeat for " + line["msg"].rsplit(" for ", 1)[1]
                   for line in web.log_lines() if line.get("logger") == "app.serving")
        wait_until(lambda: not live_gauge.exists(), timeout=10, what="the dead worker's live gauges dropped")


def test_workers_are_recycled_without_a_failed_request(server_config, tmp_path):
    """Over WEB_WORKER_MAX_RSS_MIB (here 1 MiB: always), a worker is replaced at each check, gracefully."""
    config = {**server_config, "WEB_WORKER_MAX_RSS_MIB": 1, "WEB_WORKER_CHECK_SECONDS": 1}
    with serving(config, tmp_path / "web.log") as web:
        seen = set(web.workers())
        answered = 0
        deadline = time.monotonic() + 60
        while len(seen) < 3 and time.monotonic() < deadline:
            assert answers_healthz(web.port), f"a request failed while workers were recycled (seen {seen})"
            answered += 1
            seen.update(web.workers())
            time.sleep(0.05)
        assert len(seen) >= 3, seen  # the first worker and at least two after it
        assert answered > 0


def test_a_new_run_does_not_count_the_previous_runs_workers_again(app, server_config, tmp_path):
    metrics = tmp_path / "prometheus"
    metrics.mkdir()
    config = {**server_config, "PROMETHEUS_MULTIPROC_DIR": metrics}
    event = json.dumps({"user_id": 5, "action": "counted"}).encode()
    post = (b"POST /api/event HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(event), event))

    def ingested(port: int) -> float:
        _, _, text = raw(port, b"GET /internal/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        return next(float(line.split()[-1]) for line in text.decode().splitlines()
                    if line.startswith("tracking_events_ingested_total "))

    with serving(config, tmp_path / "first.log") as first:
        for _ in range(3):
            assert raw(first.port, post)[0] == 201
        wait_until(lambda: ingested(first.port) == 3, timeout=10, what="three events counted")
    with serving(config, tmp_path / "second.log") as second:
        assert raw(second.port, post)[0] == 201
        wait_until(lambda: ingested(second.port) == 1, timeout=10, what="one event counted")


def test_a_stream_is_produced_no_faster_than_its_client_reads(streaming):
    """A client that reads nothing holds a pipe's and the sockets' worth of the answer, not the whole of it
    (granian's own stream transport would queue all 200 chunks, 12.5 MiB, in the worker)."""
    with socket.create_connection(("127.0.0.1", streaming.port), timeout=15) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        time.sleep(3)  # 200 chunks 10 ms apart would all be produced by now
        assert streaming.produced() < 100
    # A client that reads gets all of it, to the end of the chunked answer.
    status, _, body = raw(streaming.port, b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                          timeout=60)
    assert status == 200 and len(body) == 200 * 65536
