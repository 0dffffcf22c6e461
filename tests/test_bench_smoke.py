"""A smoke run of the benchmark suite (`make bench`) at tiny sizes, against the test servers.

It checks that every phase runs end to end and reports its figure beside its
reference; it asserts no speed, since seconds of load on a shared machine say
nothing about it.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import psycopg
from sqlalchemy.engine import make_url

from bench.load import AsyncioLoad, Request

REPO_ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_SECONDS = 300
FIGURES = ("POST /api/event (one event), 8 connections", "POST /api/event (one event), 4 connections",
           "POST /api/event p99, 8 connections", "Thin INSERT on the service's server", "GET /healthz p99 under",
           "Bare Flask endpoint", "PostgreSQL alone", "POST /api/events/batch",
           "GET /api/events first page", "GET /api/events deep keyset page", "calculate_metrics()",
           "Web worker RSS", "POST /api/event with a client id", "POST /api/event with the list-filter indexes",
           "with the list-filter indexes", "Python client from one process")


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def run_bench(servers, results: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bench", "--events", "20000", "--users", "500", "--rounds", "1",
               "--seconds", "1", "--warmup", "0.5", "--copy-rows", "5000", "--client-events", "2000", "--memory-seconds", "2",
               "--profile-seconds", "1", "--many-connections", "4", "--slow-seconds", "1",
               "--results", str(results)]
    env = {**os.environ, "DATABASE_URL": servers.postgres_url, "REDIS_URL": servers.redis_url}
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        output, _ = process.communicate(timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)  # the runner stops its servers and drops its database
        output, _ = process.communicate(timeout=60)
    return subprocess.CompletedProcess(command, process.returncode, output)


def test_a_tiny_bench_run_reports_every_figure_beside_its_reference(servers, tmp_path):
    results = tmp_path / "RESULTS.md"
    completed = run_bench(servers, results)
    assert completed.returncode == 0, completed.stdout[-5000:]
    table = completed.stdout[completed.stdout.index("Figure"):]
    for figure in FIGURES:
        assert figure in table
    ratios = re.findall(r"\s(\d+\.\d\d)\s+ratio [<>]= \d\.\d\d\s+(met|MISSED)", table)
    # at each of two connection counts: single events beside the thin app on gunicorn and on the same server,
    # and their p99; then batch, the Python client, deep page, metrics
    assert len(ratios) == 10
    assert re.search(r"ratio < 1.00\s+(met|MISSED)", table)  # /healthz under slow clients
    assert re.search(r"p99 < 25 ms\s+(met|MISSED)", table)
    assert re.search(r"within \+-10%\s+(met|MISSED)", table)

    report = results.read_text()
    for section in ("## Machine", "## Settings", "## Figures", "## Query plans at the seeded size"):
        assert section in report
    # events list first and deep page, metrics calculation and its two plain references, metrics list for one user
    # and all
    assert report.count("Execution Time") == 7

    name = re.search(r"database (tracking_bench_\w+)", completed.stdout)[1]
    admin = make_url(servers.postgres_url).set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False)) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone()[0] == 0


def test_the_asyncio_load_generator_counts_answers_and_failures():
    """The fallback when wrk is missing, against a one-connection-per-request WSGI server."""

    class ThreadingServer(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    def wsgi(environ, start_response):
        status = "200 OK" if environ["PATH_INFO"] == "/ok" else "500 Internal Server Error"
        start_response(status, [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    with make_server("127.0.0.1", 0, wsgi, server_class=ThreadingServer,
                     handler_class=QuietHandler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_port}"
        result = AsyncioLoad().run(base, [Request("GET", "/ok"), Request("POST", "/fail", b"{}")],
                                   connections=2, seconds=0.5)
        server.shutdown()
    assert result.requests > 10
    assert 0.3 < result.errors / result.requests < 0.7
    assert 0 < result.p50_ms <= result.p99_ms
