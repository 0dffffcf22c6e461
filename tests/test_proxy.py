"""compose's nginx proxy, run for real: Debian's nginx with deploy/nginx/default.conf.template in
front of the real web server (1 worker x 2 threads).

The template is the one compose mounts; here it is filled in the way the nginx image's envsubst
fills it, and wrapped in a minimal main context of the test's own (temp paths in the test's
directory, no daemon). Skipped, with the reason, when no nginx binary is installed
(`apt-get install nginx`; .ci/run installs it).

Every connection goes to 127.0.0.1, every loop is bounded in count and time, and every process
started here is stopped in a `finally`.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import string
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from app.core.settings import load_config
from app.http.headers import SECURITY_HEADERS
from tests.helpers import free_port, start_web, stop, wait_until
from tests.test_events_export import insert_events

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "nginx" / "default.conf.template"
NGINX = shutil.which("nginx") or next((path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                       if os.access(path, os.X_OK)), None)

pytestmark = pytest.mark.skipif(NGINX is None, reason="no nginx binary: `apt-get install nginx` (.ci/run does)")

MAX_BODY_BYTES = load_config({})["MAX_BODY_BYTES"]
# The longest request line the proxy passes on (deploy/nginx's 4 KiB buffer), CRLF not counted; the web
# server's own limit (32 KiB of request line and headers) is higher, so whatever nginx passes reaches the app.
PROXY_REQUEST_LINE = 4094
# The slow-client attack: sockets, how long, and how often each sends one more byte.
SLOW_HEADERS, SLOW_BODIES = 10, 3
ATTACK_SECONDS, TRICKLE_INTERVAL = 6.0, 0.5
HEALTHZ_BOUND = 1.0


class Envsubst(string.Template):
    """What the nginx image's entrypoint fills in: upper-case names only (envsubst with
    NGINX_ENVSUBST_FILTER); nginx's own `$variables` are lower case and stay."""

    idpattern = r"(?-i:[A-Z][A-Z0-9_]*)"


def render_template(upstream: str, listen_port: int, read_timeout: str | None = None) -> str:
    """The template as the image fills it; `read_timeout` replaces its proxy_read_timeout (a test's shortcut)."""
    values = {"UPSTREAM": upstream, "LISTEN_PORT": str(listen_port), "MAX_BODY_BYTES": str(MAX_BODY_BYTES)}
    text = Envsubst(TEMPLATE.read_text()).safe_substitute(values)
    assert not re.search(r"\$\{?[A-Z]", text), "the template has a placeholder the test does not fill"
    if read_timeout is not None:
        text, replaced = re.subn(r"proxy_read_timeout \S+;", f"proxy_read_timeout {read_timeout};", text)
        assert replaced == 1
    return text


def main_config(directory: Path, server_config: Path) -> str:
    """The main context around the template, as the image's nginx.conf puts one around conf.d/."""
    temp_paths = "\n".join(f"    {kind}_temp_path {directory / kind};"
                           for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # As root, nginx's workers would run as `nobody`, who cannot write the test's temp paths.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (f"{user}worker_processes 1;\n"
            "events { worker_connections 512; }\n"
            "http {\n"
            f"{temp_paths}\n"
            f"    include {server_config};\n"
            "}\n")


def wait_for_port(port: int, process: subprocess.Popen, log_path: Path, timeout: float = 30.0) -> None:
    def listening() -> bool:
        assert process.poll() is None, f"exited with {process.returncode}:\n{log_path.read_text()}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False
    wait_until(listening, timeout=timeout, interval=0.1)


@contextmanager
def nginx(directory: Path, upstream: str, read_timeout: str | None = None) -> Iterator[int]:
    """Debian's nginx, not a daemon, on a free port in front of `upstream`; yields the port."""
    directory.mkdir()
    port = free_port()
    server_config = directory / "default.conf"
    server_config.write_text(render_template(upstream, port, read_timeout))
    config = directory / "nginx.conf"
    config.write_text(main_config(directory, server_config))
    log_path = directory / "nginx.log"  # the JSON access log (stdout) and the error log (stderr)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [NGINX, "-p", str(directory), "-c", str(config),
             "-g", f"daemon off; pid {directory / 'nginx.pid'}; error_log stderr;"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process, log_path)
        yield port
    finally:
        stop(process, log_path)


@pytest.fixture
def web(app, app_config, tmp_path) -> Iterator[int]:
    """The web server as compose runs it, with only two threads; yields its port."""
    port = free_port()
    settings = {**app_config, "PORT": port, "WEB_WORKERS": 1, "WEB_THREADS": 2, "LOG_FORMAT": "json"}
    log_path = tmp_path / "web.log"
    process = start_web(settings, log_path)
    try:
        wait_for_port(port, process, log_path)
        # The master listens before its worker has loaded the app: wait for an answer.
        wait_until(lambda: request(port, "GET", "/healthz", timeout=5)[0] == 200, timeout=30, interval=0.1)
        yield port
    finally:
        stop(process, log_path)


@pytest.fixture
def proxy(web, tmp_path) -> Iterator[int]:
    """nginx in front of the web server above; yields nginx's port."""
    with nginx(tmp_path / "nginx", f"127.0.0.1:{web}") as port:
        yield port


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
            timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()  # names match in any case, as in HTTP
    finally:
        connection.close()


def raw_request(port: int, data: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (a server may answer and close before it has read them all)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            for start in range(0, len(data), 65536):
                sock.sendall(data[start:start + 65536])
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused early; the answer is already waiting
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, dict(response.getheaders()), response.read()


def assert_envelope(status: int, headers: dict[str, str], body: bytes, expected_status: int, code: str) -> dict:
    """The API's error envelope, with the app's security headers: what nginx answers itself."""
    assert status == expected_status, body
    assert headers["Content-Type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == code and error["message"] and error["field"] is None
    assert set(error) == {"code", "message", "field"}
    assert_security_headers(headers)
    return error


def assert_security_headers(headers: dict[str, str]) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, name
    assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-ID"])


# --- Slow clients ---------------------------------------------------------------------------

@dataclass
class SlowClients:
    """Valid requests sent a byte every TRICKLE_INTERVAL, none finished within ATTACK_SECONDS:
    SLOW_HEADERS trickle their request line and headers from the first byte on, SLOW_BODIES send
    their headers at once and then trickle a 1000-byte body."""

    port: int
    sockets: list[socket.socket] = field(default_factory=list)
    rest: list[bytes] = field(default_factory=list)  # what each socket has still to send
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> threading.Thread:
        for n in range(SLOW_HEADERS):
            self._open(b"", f"GET /healthz?slow={n} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        for n in range(SLOW_BODIES):
            head = (f"POST /api/event HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    f"Content-Length: 1000\r\nX-Slow: body-{n}\r\n\r\n").encode()
            self._open(head, b'{"user_id": 1, "action": "slow", "metadata": {"pad": "' + b"a" * 1000)
        thread = threading.Thread(target=self._trickle, daemon=True)
        thread.start()
        return thread

    def _open(self, at_once: bytes, trickled: bytes) -> None:
        assert len(trickled) > ATTACK_SECONDS / TRICKLE_INTERVAL + 1  # never finished in time
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.sendall(at_once + trickled[:1])
        self.sockets.append(sock)
        self.rest.append(trickled[1:])

    def _trickle(self) -> None:
        deadline = time.monotonic() + ATTACK_SECONDS
        while not self.stop.wait(TRICKLE_INTERVAL) and time.monotonic() < deadline:
            for n, sock in enumerate(self.sockets):
                try:
                    sock.sendall(self.rest[n][:1])
                    self.rest[n] = self.rest[n][1:]
                except OSError:
                    pass  # closed by the server: still_waiting() tells

    def still_waiting(self) -> int:
        """How many are still connected and unanswered (the server neither closed nor answered them)."""
        waiting = 0
        for sock in self.sockets:
            sock.setblocking(False)
            try:
                sock.recv(1)  # b"" (closed) or the start of an answer
            except BlockingIOError:
                waiting += 1
            except OSError:
                pass
            finally:
                sock.setblocking(True)
        return waiting

    def close(self) -> None:
        self.stop.set()
        for sock in self.sockets:
            sock.close()


@contextmanager
def slow_clients(port: int) -> Iterator[SlowClients]:
    clients = SlowClients(port)
    try:
        thread = clients.start()
        yield clients
        thread.join(timeout=ATTACK_SECONDS + 5)
    finally:
        clients.close()


def healthz_times(port: int, until: float) -> list[float]:
    """GET /healthz every 0.2 s until `until`: how long each took (inf: no 200 within 3 s)."""
    times = []
    for _ in range(100):
        if time.monotonic() >= until:
            break
        started = time.monotonic()
        try:
            status, _, _ = request(port, "GET", "/healthz", timeout=3)
        except OSError:
            status = None
        times.append(time.monotonic() - started if status == 200 else float("inf"))
        time.sleep(0.2)
    print("/healthz took", [round(took, 3) for took in times])
    return times


def test_slow_clients_do_not_stall_the_service_through_the_proxy(proxy):
    with slow_clients(proxy) as clients:
        time.sleep(1)  # every slow socket has sent its first bytes
        times = healthz_times(proxy, until=time.monotonic() + ATTACK_SECONDS - 1.5)
        assert clients.still_waiting() == SLOW_HEADERS + SLOW_BODIES, "nginx dropped slow clients: nothing was tested"
    assert len(times) >= 10
    assert max(times) < HEALTHZ_BOUND, times


def test_the_same_slow_clients_do_not_stall_the_web_server_without_the_proxy(web):
    """Straight at the web server (one worker, two threads), the same clients wait on its event loop, not
    in its threads: /healthz keeps answering (behind gunicorn, the server before, it stopped at once)."""
    with slow_clients(web) as clients:
        time.sleep(1)
        times = healthz_times(web, until=time.monotonic() + ATTACK_SECONDS - 1.5)
        assert clients.still_waiting() == SLOW_HEADERS + SLOW_BODIES, "the server dropped them: nothing was tested"
    assert len(times) >= 10
    assert max(times) < HEALTHZ_BOUND, times


# --- Sizes nginx refuses itself -----------------------------------------------------------

def test_a_long_url_gets_414_from_the_proxy_with_the_envelope(proxy):
    long_query = "?q=" + "a" * 20_000
    error = assert_envelope(*request(proxy, "GET", "/api/events" + long_query), 414, "uri_too_long")
    assert "4 KiB" in error["message"]
    status, headers, body = request(proxy, "GET", "/events" + long_query)  # a dashboard page: text
    assert status == 414 and headers["Content-Type"] == "text/plain" and b"longer than 4 KiB" in body
    assert_security_headers(headers)


def request_line(length: int) -> bytes:
    start, end = b"GET /api/events?pad=", b" HTTP/1.1"
    line = start + b"a" * (length - len(start) - len(end)) + end
    assert len(line) == length
    return line + b"\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def test_the_longest_request_line_the_proxy_passes_reaches_the_app(proxy):
    """No gap where a line passes nginx and the web server refuses it with a bare answer of its own."""
    status, _, body = raw_request(proxy, request_line(PROXY_REQUEST_LINE))
    assert status == 400 and json.loads(body)["error"]["field"] == "pad"  # the app's answer: the server took it
    assert_envelope(*raw_request(proxy, request_line(PROXY_REQUEST_LINE + 1)), 414, "uri_too_long")


def test_a_long_header_gets_431_from_the_proxy_with_the_envelope(proxy):
    # nginx's own status for this is 494, which it would answer as a bare 400; the config says 431.
    headers = {"X-Big": "a" * 20_000}
    assert_envelope(*request(proxy, "GET", "/api/events", headers=headers), 431, "request_header_too_large")
    many = {f"X-Many-{n}": "a" * 3000 for n in range(8)}  # each line fits, together they do not
    assert_envelope(*request(proxy, "GET", "/api/events", headers=many), 431, "request_header_too_large")


def test_a_malformed_request_gets_400_from_the_proxy_with_the_envelope(proxy):
    no_host = b"GET /api/events HTTP/1.1\r\nConnection: close\r\n\r\n"  # HTTP/1.1 requires Host
    assert_envelope(*raw_request(proxy, no_host), 400, "bad_request")


def chunked(size: int, chunk: int = 65536) -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (chunk, b" " * chunk) for _ in range(size // chunk))
    return body + b"0\r\n\r\n"


def test_a_chunked_body_over_the_limit_gets_413_from_the_proxy_with_the_envelope(proxy):
    head = (b"POST /api/events/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    error = assert_envelope(*raw_request(proxy, head + chunked(2 * 1024 * 1024)), 413, "payload_too_large")
    assert error["message"] == f"request body is larger than {MAX_BODY_BYTES} bytes"  # the app's words
    declared = head.replace(b"Transfer-Encoding: chunked", b"Content-Length: %d" % (MAX_BODY_BYTES + 1))
    assert_envelope(*raw_request(proxy, declared + b" " * (MAX_BODY_BYTES + 1)), 413, "payload_too_large")


def test_a_body_of_the_apps_limit_passes_the_proxy(proxy):
    body = b"[" + b" " * (MAX_BODY_BYTES - 2) + b"]"
    status, _, answer = request(proxy, "POST", "/api/events/batch", body=body,
                                headers={"Content-Type": "application/json"})
    error = json.loads(answer)["error"]
    assert status == 400 and error["field"] == "events"  # the app parsed it: an empty array is no batch


def test_the_proxy_answers_502_with_the_envelope_when_the_web_server_is_down(tmp_path):
    with nginx(tmp_path / "nginx", f"127.0.0.1:{free_port()}") as port:  # nothing listens there
        assert_envelope(*request(port, "GET", "/api/events"), 502, "upstream_unavailable")
        status, headers, _ = request(port, "GET", "/events")
        assert status == 502 and headers["Content-Type"] == "text/plain"
        assert_security_headers(headers)


# --- Ordinary traffic ---------------------------------------------------------------------

def test_an_event_goes_through_the_proxy_and_keeps_its_request_id(proxy):
    event = {"user_id": 7, "action": "through_proxy", "metadata": {"page": "/home"}}
    status, headers, body = request(proxy, "POST", "/api/event", body=json.dumps(event).encode(),
                                    headers={"Content-Type": "application/json", "X-Request-ID": "proxy-test-1"})
    assert status == 201, body
    assert headers["X-Request-ID"] == "proxy-test-1"
    assert json.loads(body)["action"] == "through_proxy"
    for name, value in SECURITY_HEADERS.items():  # the app's own, passed through once
        assert headers[name] == value

    # Without one, the id nginx makes (and logs) is the one the app uses.
    status, headers, _ = request(proxy, "GET", "/api/events?user_id=7")
    assert status == 200 and re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-ID"])

    status, headers, body = request(proxy, "GET", "/api/events/export?user_id=7")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert b"through_proxy" in body


def test_the_proxy_does_not_route_internal_endpoints(proxy, web):
    """Prometheus scrapes the web server inside the compose network; from outside, /internal/ and /readyz do
    not exist."""
    status, headers, body = request(proxy, "GET", "/internal/metrics")
    assert status == 404 and b"tracking_" not in body
    assert_security_headers(headers)
    assert request(web, "GET", "/internal/metrics")[0] == 200  # open mode: the server itself serves it
    # /readyz names the schema revision and each dependency's error: for compose's health check and an
    # orchestrator, which ask the web server directly (issue 21, class 10)
    status, _headers, body = request(proxy, "GET", "/readyz")
    assert status == 404 and b"revision" not in body
    assert request(web, "GET", "/readyz")[0] == 200
    assert request(proxy, "GET", "/healthz")[0] == 200  # liveness tells nothing: still routed


def test_an_export_streaming_longer_than_the_proxys_read_timeout_arrives_whole(app, web, tmp_path):
    """The proxy's read timeout is between two reads from the web server, and an export never pauses for
    longer than one keyset page's statement: with the timeout cut to 1 s, a slowly read export of a few
    seconds still arrives whole."""
    insert_events(app, 100_000)
    with nginx(tmp_path / "nginx", f"127.0.0.1:{web}", read_timeout="1s") as port:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/api/events/export")
        response = connection.getresponse()
        assert response.status == 200
        started, lines = time.monotonic(), 0
        while chunk := response.read(256 * 1024):
            lines += chunk.count(b"\r\n")
            time.sleep(0.05)  # a reader slower than the server
        connection.close()
    assert time.monotonic() - started > 1
    assert lines == 100_000 + 1  # every event and the header row
