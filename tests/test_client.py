"""The Python client (`clients/python`, `tracking_client`) against the real service: the web server as `make run`
starts it, PostgreSQL and Redis.

Between client and service there is, where a test needs one, a TCP proxy that drops connections and answers
already on their way, the way a flaky network or a restarted load balancer does.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import venv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from app.extensions import db
from tests.helpers import answers_healthz, free_port, start_web, stop, wait_until
from tracking_client import DeliveryError, Tracker

pytestmark = pytest.mark.seconds

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "clients" / "python"


@contextmanager
def web_server(config: dict[str, Any], log_path: Path, port: int | None = None) -> Iterator[int]:
    """The production web server (`python -m app.serving`) on `port`; yields the port."""
    port = port or free_port()
    process = start_web({**config, "PORT": port, "WEB_WORKERS": 1, "WEB_THREADS": 4}, log_path)
    try:
        wait_until(lambda: answers_healthz(port), timeout=30, interval=0.1, what="the web server answers")
        yield port
    finally:
        stop(process, log_path)


@pytest.fixture
def service(app, app_config, tmp_path) -> Iterator[str]:
    with web_server(app_config, tmp_path / "web.log") as port:
        yield f"http://127.0.0.1:{port}"


def stored(app, action: str) -> list[tuple[str, int]]:
    """(id, copies) of the stored events with this action."""
    with app.app_context():
        return db.session.execute(sa.text("SELECT id::text, count(*) FROM events WHERE action = :action "
                                          "GROUP BY id"), {"action": action}).all()


class FlakyProxy:
    """A TCP proxy to `upstream` that, while `faulty`, cuts a connection on a fixed schedule: every
    `drop_every`-th request chunk before it reaches the service, and every `lose_every`-th answer chunk after
    the service sent it, before it reaches the client. A schedule, not chance: every run cuts both."""

    def __init__(self, upstream_port: int, drop_every: int, lose_every: int) -> None:
        self.upstream_port = upstream_port
        self.every = {"request": drop_every, "answer": lose_every}
        self.faulty = True
        self.seen = {"request": 0, "answer": 0}
        self.cut = {"request": 0, "answer": 0}
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30)
        except OSError:
            client.close()  # the service is down: the client sees the connection cut
            return
        threading.Thread(target=self._relay, args=(upstream, client, "answer"), daemon=True).start()
        self._relay(client, upstream, "request")

    def _relay(self, source: socket.socket, target: socket.socket, what: str) -> None:
        try:
            while chunk := source.recv(65536):
                if self._cuts(what):
                    break
                target.sendall(chunk)
        except OSError:
            pass
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _cuts(self, what: str) -> bool:
        with self.lock:
            if not self.faulty:
                return False
            self.seen[what] += 1
            if self.seen[what] % self.every[what]:
                return False
            self.cut[what] += 1
            return True

    def close(self) -> None:
        self.listener.close()


def test_track_flush_and_close_store_every_event_once(app, service):
    tracker = Tracker(service)
    ids = [tracker.track(user_id=n % 50 + 1, action="client_basic", metadata={"n": n}) for n in range(2500)]
    assert tracker.flush(timeout=30)
    assert tracker.close(timeout=10)
    rows = stored(app, "client_basic")
    assert sorted(event_id for event_id, _ in rows) == sorted(ids)
    assert all(copies == 1 for _, copies in rows)
    stats = tracker.stats
    assert (stats.sent, stats.duplicates, stats.dropped, stats.failed, stats.queued) == (2500, 0, 0, 0, 0)


def test_a_quiet_backend_s_events_leave_after_the_interval_without_a_flush(app, service):
    tracker = Tracker(service, flush_interval=0.2)
    for n in range(3):  # one at a time, each after the one before was stored: the queue empties in between
        tracker.track(user_id=2, action="client_quiet", metadata={"n": n})
        wait_until(lambda: len(stored(app, "client_quiet")) == n + 1, timeout=10,
                   what=f"event {n + 1} stored without a flush")
    assert tracker.close(timeout=5)


def test_an_outage_of_network_and_server_loses_nothing_and_stores_nothing_twice(app, app_config, tmp_path):
    """The issue's outage: a proxy drops connections and answers already on their way while 5,000 events are
    tracked, and the web server is stopped for a few seconds and started again; then exactly 5,000 rows."""
    port = free_port()
    errors: list[str] = []
    with web_server(app_config, tmp_path / "web-1.log", port):
        proxy = FlakyProxy(port, drop_every=20, lose_every=7)
        tracker = Tracker(f"http://127.0.0.1:{proxy.port}", batch_size=200, flush_interval=0.05, timeout=5,
                          on_error=lambda event, reason: errors.append(reason))
        ids = [tracker.track(user_id=7, action="client_outage", metadata={"n": n}) for n in range(2500)]
        wait_until(lambda: tracker.stats.sent > 0, timeout=30, what="some events stored before the stop")
    # the server is down: tracking goes on, the client retries
    ids += [tracker.track(user_id=7, action="client_outage", metadata={"n": n}) for n in range(2500, 4000)]
    wait_until(lambda: tracker.stats.retries >= 3, timeout=30, what="retries while the server is down")
    with web_server(app_config, tmp_path / "web-2.log", port):
        ids += [tracker.track(user_id=7, action="client_outage", metadata={"n": n}) for n in range(4000, 5000)]
        assert tracker.flush(timeout=120), tracker.stats
        proxy.faulty = False
        assert tracker.close(timeout=30)
    proxy.close()
    rows = stored(app, "client_outage")
    assert len(rows) == 5000 and {event_id for event_id, _ in rows} == set(ids)
    assert all(copies == 1 for _, copies in rows)
    assert errors == []
    stats = tracker.stats
    assert proxy.cut["request"] and proxy.cut["answer"], proxy.cut
    # each event's one answer that arrived said "created" or, where an earlier answer was lost, "duplicate"
    assert stats.sent + stats.duplicates == 5000 and stats.failed == 0
    assert stats.duplicates > 0, "no answer was lost after its events were stored"


def test_429_is_waited_out_as_retry_after_says_and_everything_arrives(app, app_config, tmp_path):
    config = {**app_config, "RATE_LIMIT_INGEST": "300 per second"}
    with web_server(config, tmp_path / "web.log") as port:
        tracker = Tracker(f"http://127.0.0.1:{port}", batch_size=1000)
        for n in range(1200):
            tracker.track(user_id=3, action="client_429", metadata={"n": n})
        assert tracker.close(timeout=60)
    assert len(stored(app, "client_429")) == 1200
    assert tracker.stats.retries > 0 and tracker.stats.failed == 0  # batches over the budget were split, then waited


def test_a_refused_event_goes_to_on_error_and_the_rest_of_its_batch_is_stored(app, service):
    refused: list[tuple[dict, str]] = []
    tracker = Tracker(service, on_error=lambda event, reason: refused.append((event, reason)))
    good = [tracker.track(user_id=4, action="client_partial") for _ in range(5)]
    bad = tracker.track(user_id=4, action="   ")  # a blank action: the service refuses it
    good += [tracker.track(user_id=4, action="client_partial") for _ in range(5)]
    assert not tracker.flush(timeout=30)  # settled, but not all stored
    assert not tracker.close(timeout=30)
    assert sorted(event_id for event_id, _ in stored(app, "client_partial")) == sorted(good)
    assert [event["id"] for event, _ in refused] == [bad]
    assert "action" in refused[0][1]
    assert tracker.stats.failed == 1 and tracker.stats.sent == 10


def test_sync_mode_delivers_inside_track(app, service):
    tracker = Tracker(service, sync=True)
    event_id = tracker.track(user_id=5, action="client_sync")
    assert stored(app, "client_sync") == [(event_id, 1)]
    tracker.close()
    down = Tracker(f"http://127.0.0.1:{free_port()}", sync=True, max_retry_seconds=0.5)
    with pytest.raises(DeliveryError, match="not delivered in time"):
        down.track(user_id=5, action="client_sync")
    assert down.stats.failed == 1 and down.stats.retries >= 1
    assert not down.close()  # what was tracked was not all stored


def test_a_full_queue_drops_and_counts_and_track_never_waits_for_a_dead_service(app_config):
    with socket.create_server(("127.0.0.1", 0)) as hung:  # accepts, never answers: the sender waits on it
        dropped: list[str] = []
        tracker = Tracker(f"http://127.0.0.1:{hung.getsockname()[1]}", max_queue_size=100, batch_size=10,
                          flush_interval=0.01, timeout=30, on_error=lambda event, reason: dropped.append(reason))
        done = threading.Event()

        def track_many() -> None:
            for n in range(300):
                tracker.track(user_id=6, action="client_full", metadata={"n": n})
            done.set()

        threading.Thread(target=track_many, daemon=True).start()
        assert done.wait(20), "track() blocked while the service hung"
        hung.settimeout(20)
        stuck, _ = hung.accept()  # the sender has taken one batch and waits on the answer: no more leaves the queue
        with stuck:
            stats = tracker.stats
            # One batch (1 to 10 events) is in flight, the queue holds at most 100, the rest were dropped.
            assert stats.dropped == len(dropped)
            assert all(reason.startswith("dropped: the queue holds 100") for reason in dropped)
            assert 90 <= stats.queued <= 100 and 290 <= stats.queued + stats.dropped <= 299, stats
            assert not tracker.close(timeout=0.5)  # it gives up at its deadline rather than hang the process
            with pytest.raises(RuntimeError, match="closed"):
                tracker.track(user_id=6, action="client_full")


def run_script(code: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run([sys.executable, str(script)], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120)


def test_a_script_that_exits_without_close_leaves_every_event_stored(app, service, tmp_path):
    result = run_script("""
        import os
        from tracking_client import Tracker
        tracker = Tracker(os.environ["SERVICE"])
        for n in range(1000):
            tracker.track(user_id=8, action="client_exit", metadata={"n": n})
        print("tracked")
    """, {"SERVICE": service}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(stored(app, "client_exit")) == 1000


def test_a_forked_child_sends_its_own_events_and_none_of_its_parents_twice(app, service, tmp_path):
    result = run_script("""
        import os, sys
        from tracking_client import Tracker
        tracker = Tracker(os.environ["SERVICE"], flush_interval=5)
        for n in range(50):
            tracker.track(user_id=9, action="client_fork", metadata={"who": "parent", "n": n})
        pid = os.fork()
        if pid == 0:  # the child: a queue and a thread of its own, flushed at its exit
            for n in range(100):
                tracker.track(user_id=9, action="client_fork", metadata={"who": "child", "n": n})
            sys.exit(0)
        _, status = os.waitpid(pid, 0)
        assert status == 0, status
    """, {"SERVICE": service}, tmp_path)
    assert result.returncode == 0, result.stderr
    rows = stored(app, "client_fork")
    assert len(rows) == 150 and all(copies == 1 for _, copies in rows)


def test_the_package_installs_into_an_empty_virtual_environment(tmp_path):
    """`pip install ./clients/python` from a checkout, into a venv holding nothing else."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # a copy: pip builds in the directory it is given, which another session's test may be building in
    source = shutil.copytree(CLIENT, tmp_path / "python", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(source)], capture_output=True,
                             text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format", "json"], capture_output=True, text=True)
    assert "tracking-client" in {package["name"] for package in json.loads(listed.stdout)}
    probe = subprocess.run([str(python), "-c", "import json, tracking_client as t; "
                            "print(json.dumps([n for n in dir(t.Tracker) if not n.startswith('_')]))"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    assert {"track", "flush", "close", "stats"} <= set(json.loads(probe.stdout))
