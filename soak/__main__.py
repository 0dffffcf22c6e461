"""`make soak`: a minute of mixed traffic against the real service, on loopback.

Starts the web server (as compose does) and an RQ worker against a database of its
own on the PostgreSQL named by DATABASE_URL and a key namespace of its own on
REDIS_URL, then drives ingestion, batches, lists, dashboard fragments and
recalculations from several client threads. It passes when no request got a
5xx (or no answer), a web worker's memory stayed within 10% after warm-up, and
the PostgreSQL connections stayed within what the pools allow. It drops its
database and deletes its Redis keys at the end.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg

from app.dev.fixtures import drop_namespace, free_port, throwaway_database, wait_until

ROOT = Path(__file__).resolve().parent.parent
WEB_WORKERS = 2
POOL_SIZE = 5
POOL_OVERFLOW = 10  # SQLAlchemy's default max_overflow
MEMORY_TOLERANCE = 0.10


@dataclass
class Tally:
    """What the clients saw, per operation and status; shared by the client threads."""

    counts: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, operation: str, status: int) -> None:
        with self.lock:
            self.counts[(operation, status)] += 1

    def fail(self, message: str) -> None:
        with self.lock:
            self.failures.append(message)


def _event(rng: random.Random) -> dict[str, object]:
    return {"user_id": rng.randint(1, 200), "action": rng.choice(["page_view", "click", "search", "purchase"]),
            "metadata": {"page": f"/p/{rng.randint(1, 50)}"},
            "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - rng.randint(0, 86400)))}


def _operations(rng: random.Random) -> list[tuple[int, str, Callable[[], tuple[str, str, bytes | None, dict]]]]:
    """(weight, name, request maker) for the traffic mix."""
    json_headers = {"Content-Type": "application/json"}
    htmx = {"HX-Request": "true"}
    return [
        (40, "POST /api/event", lambda: ("POST", "/api/event", json.dumps(_event(rng)).encode(), json_headers)),
        (8, "POST /api/events/batch", lambda: ("POST", "/api/events/batch", json.dumps(
            {"events": [_event(rng) for _ in range(50)]}).encode(), json_headers)),
        (20, "GET /api/events", lambda: ("GET", f"/api/events?user_id={rng.randint(1, 200)}&limit=50", None, {})),
        (6, "GET /api/metrics", lambda: ("GET", f"/api/metrics?user_id={rng.randint(1, 200)}", None, {})),
        (12, "GET /events (fragment)", lambda: ("GET", f"/events?user_id={rng.randint(1, 200)}", None, htmx)),
        (6, "GET /metrics (fragment)", lambda: ("GET", "/metrics", None, htmx)),
        (2, "GET /events (page)", lambda: ("GET", "/events", None, {})),
        (3, "POST /api/metrics", lambda: ("POST", "/api/metrics", None, {})),
        (3, "GET /readyz", lambda: ("GET", "/readyz", None, {})),
    ]


def _client(port: int, deadline: float, seed: int, tally: Tally) -> None:
    """One keep-alive connection sending a weighted mix of requests until the deadline."""
    rng = random.Random(seed)
    operations = _operations(rng)
    weights = [weight for weight, _, _ in operations]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while time.monotonic() < deadline:
        _, name, make = rng.choices(operations, weights)[0]
        method, path, body, headers = make()
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            tally.add(name, response.status)
        except (OSError, http.client.HTTPException) as exc:
            tally.fail(f"{name}: {exc.__class__.__name__}: {exc}")
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.close()


def _ready(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", "/readyz")
        return connection.getresponse().status == 200
    except OSError:
        return False


def _web_workers(master: psutil.Process) -> list[psutil.Process]:
    return master.children()  # the web server's master starts its workers and nothing else


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the traffic (default 60)")
    parser.add_argument("--clients", type=int, default=6, help="concurrent client connections (default 6)")
    args = parser.parse_args(argv)

    server_url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    namespace = f"tracking-soak-{uuid.uuid4().hex[:10]}"
    with throwaway_database(server_url, "tracking_soak") as database_url:
        try:
            return _run(args, database_url, redis_url, namespace)
        finally:
            drop_namespace(redis_url, namespace)


def _run(args: argparse.Namespace, database_url: str, redis_url: str, namespace: str) -> int:
    """Start the service on the soak's database and namespace, drive it, and stop it."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "REDIS_NAMESPACE": namespace,
           "PORT": str(port), "WEB_WORKERS": str(WEB_WORKERS), "DATABASE_POOL_SIZE": str(POOL_SIZE),
           "LOG_LEVEL": "WARNING", "ACCESS_CONTROL": "off", "PYTHONUNBUFFERED": "1",
           # every client thread reads from one address: keep the read budget's check, not its 429s
           "RATE_LIMIT_READ": "1000000 per second"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)

    processes: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=env,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        web = subprocess.Popen([sys.executable, "-m", "app.serving"], cwd=ROOT, env=env, process_group=0)
        worker = subprocess.Popen([sys.executable, "worker.py"], cwd=ROOT, env=env, process_group=0,
                                  stdout=subprocess.DEVNULL)
        processes += [web, worker]
        wait_until(lambda: _ready(port), timeout=30, interval=0.2, what="the service becoming ready")
        return _soak(args, port, database_url, psutil.Process(web.pid))
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _soak(args: argparse.Namespace, port: int, database_url: str, master: psutil.Process) -> int:
    tally = Tally()
    started = time.monotonic()
    deadline = started + args.seconds
    clients = [threading.Thread(target=_client, args=(port, deadline, seed, tally)) for seed in range(args.clients)]
    for thread in clients:
        thread.start()
    warm_up = started + min(10.0, args.seconds / 4)
    rss_after_warm_up: dict[int, int] = {}
    rss_at_end: dict[int, int] = {}
    most_connections = 0
    with psycopg.connect(database_url, autocommit=True) as observer:
        while any(thread.is_alive() for thread in clients):
            # the observer's own connection is not the service's
            connections = observer.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                           " AND pid <> pg_backend_pid()").fetchone()[0]
            most_connections = max(most_connections, connections)
            workers = {process.pid: process.memory_info().rss for process in _web_workers(master)}
            if time.monotonic() >= warm_up and not rss_after_warm_up:
                rss_after_warm_up = workers
            rss_at_end = workers
            time.sleep(0.5)
    for thread in clients:
        thread.join()
    return _report(args, tally, time.monotonic() - started, rss_after_warm_up, rss_at_end, most_connections)


def _report(args: argparse.Namespace, tally: Tally, elapsed: float, rss_start: dict[int, int],
            rss_end: dict[int, int], most_connections: int) -> int:
    total = sum(tally.counts.values())
    server_errors = sum(count for (_, status), count in tally.counts.items() if status >= 500)
    connection_bound = (WEB_WORKERS + 2) * (POOL_SIZE + POOL_OVERFLOW)
    print(f"soak: {total} requests in {elapsed:.1f} s ({total / elapsed:.0f}/s) from {args.clients} clients")
    for (name, status), count in sorted(tally.counts.items()):
        print(f"  {name:<28} {status}  {count}")
    problems = []
    if server_errors:
        problems.append(f"{server_errors} responses were 5xx")
    if tally.failures:
        problems.append(f"{len(tally.failures)} requests got no answer, e.g. {tally.failures[0]}")
    for pid, start in rss_start.items():
        end = rss_end.get(pid, start)
        growth = (end - start) / start
        print(f"  web worker {pid}: RSS {start / 2**20:.1f} -> {end / 2**20:.1f} MiB ({growth:+.1%})")
        if abs(growth) > MEMORY_TOLERANCE:
            problems.append(f"web worker {pid} memory changed by {growth:+.1%}")
    print(f"  PostgreSQL connections: at most {most_connections} (bound {connection_bound})")
    if most_connections > connection_bound:
        problems.append(f"{most_connections} PostgreSQL connections exceed the bound of {connection_bound}")
    print(f"soak: 5xx: {server_errors}, unanswered: {len(tally.failures)}")
    for problem in problems:
        print(f"soak: FAILED: {problem}")
    print("soak: passed" if not problems else "soak: failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
