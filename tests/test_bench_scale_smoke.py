"""A smoke run of `make bench-scale` at tiny sizes: every phase runs and every figure, plan and span is reported.

It asserts no speed (seconds on a shared machine say nothing); the real run's
figures are in bench/RESULTS-scale.md.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

REPO_ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_SECONDS = 300
FIGURES = ("POST /api/event, requests/s", "POST /api/events/batch", "first page: p99", "deep keyset page",
           "an action over one day", "meta.page over one day", "calculate_metrics(), one window", "Forget one day",
           "a day without partition")


def test_a_tiny_scale_run_reports_every_figure_plan_and_span(servers, tmp_path):
    results = tmp_path / "RESULTS-scale.md"
    command = [sys.executable, "-m", "bench.scale", "--events", "30000", "--days", "3", "--users", "300",
               "--rounds", "1", "--seconds", "1", "--warmup", "0.5", "--span-events", "3000", "--span-days", "21",
               "--results", str(results)]
    env = {**os.environ, "DATABASE_URL": servers.postgres_url, "REDIS_URL": servers.redis_url}
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        output, _ = process.communicate(timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)  # the runner stops its server and drops its database
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output[-5000:]

    report = results.read_text()
    table = report.split("## Figures", 1)[1].split("## Partition span", 1)[0]
    for figure in FIGURES:
        assert figure in table, figure
    assert len(re.findall(r"\| (met|MISSED) \|", table)) == 7  # ingestion x2, lists x4, the drop
    assert "30,000 events" in table and "over 3 day partitions" in table
    spans = report.split("## Partition span", 1)[1]
    assert re.search(r"\| daily \| 21 \| [\d,]+ us \|", spans) and re.search(r"\| weekly \| [34] \|", spans)
    assert report.count("Execution Time") == 8  # six of the service's reads, the calculation and its pending windows

    name = re.search(r"database (tracking_scale_\w+)", output)[1]
    admin = make_url(servers.postgres_url).set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False)) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone()[0] == 0
