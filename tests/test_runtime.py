"""The runtime: one object per app and process holds every per-process mechanism, with one rule after a fork
and one `close()` (app/runtime/)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from app.extensions import db, runtime
from tests.helpers import ROOT

CHILD_OK = 0


def _backend(process) -> int:
    with process.writer.write() as connection:
        return connection.info.backend_pid


def _in_child(report) -> dict:
    """Fork; run `report()` in the child and return what it sends back (as JSON), after the child has exited."""
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the child: report, then leave without running pytest's exit
        try:
            os.write(writer, json.dumps(report()).encode())
        finally:
            os._exit(CHILD_OK)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        reported = pipe.read()
    assert os.waitpid(child, 0)[1] == CHILD_OK
    return json.loads(reported)


def test_a_forked_child_makes_its_own_members_and_leaves_its_parents_working(app):
    with app.app_context():
        process = runtime()
        seen: list[float] = []
        queue = process.observations
        queue.add(seen.append, 1.0)  # queued by the parent before the fork: the parent's to apply
        parent_backend = _backend(process)
        parent_counts = process.budget_counts

        def report() -> dict:
            process.observations.add(seen.append, 2.0)
            process.observations.apply()
            return {"seen": seen, "backend": _backend(process), "same_queue": process.observations is queue,
                    "same_counts": process.budget_counts is parent_counts,
                    "events": process.database.read_engine.connect().execute(sa.text("SELECT 1")).scalar_one()}

        child = _in_child(report)
        assert child["seen"] == [2.0]
        assert child["backend"] != parent_backend  # a connection of its own, not the parent's socket
        assert not child["same_queue"] and not child["same_counts"]
        assert child["events"] == 1  # the pooled engines serve the child on connections of its own
        # the child neither closed nor used the parent's connection and queue
        assert _backend(process) == parent_backend
        queue.apply()
        assert seen == [1.0]
        assert db.session.execute(sa.text("SELECT 1")).scalar_one() == 1


def test_close_ends_every_connection_the_runtime_made(app):
    with app.app_context():
        process = runtime()
        backend = _backend(process)
        process.observations.add(lambda amount: None, 1.0)
        with process.guarded_redis() as redis:
            redis.ping()
        name = f"closing-{os.getpid()}"
        process.request_redis.client_setname(name)
        process.close()
        with db.engine.connect() as connection:
            alive = connection.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                                       {"pid": backend}).scalar_one()
    assert alive == 0
    with app.app_context():
        clients = [entry["name"] for entry in runtime().background_redis.client_list()]
    assert name not in clients


def test_a_process_that_exits_in_good_order_counts_its_last_observations(app_config, tmp_path):
    """What requests queued just before a normal exit still reaches Prometheus's files (PROMETHEUS_MULTIPROC_DIR)."""
    script = ("from app import create_app\n"
              "from app.ops.prometheus import count_events\n"
              "app = create_app()\n"
              "with app.app_context():\n"
              "    count_events(created=7)\n")
    environment = {**os.environ, **{key: str(value) for key, value in app_config.items()},
                   "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=environment, check=True, timeout=60)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    assert registry.get_sample_value("tracking_events_ingested_total") == 7
