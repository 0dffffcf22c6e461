"""Liveness and readiness probes, outside /api: `GET /healthz` and `GET /readyz`.

`/healthz` answers while the process serves requests and touches nothing
else, so an orchestrator restarts only a process that is really stuck.
`/readyz` answers 200 only when PostgreSQL runs `SELECT 1`, the database's
alembic revision is the head of migrations/, and Redis answers PING. With a
replica configured it also says where reads go: a replica that is down or
lagging is reported (`degraded`) but fails nothing, since reads then fall
back to the primary.

Each check opens a fresh connection with short timeouts instead of using the
app's pools (a checkout could wait behind busy requests), and all checks run
on the runtime's small thread pool under one deadline, READYZ_TIMEOUT_SECONDS:
a dead or hanging dependency turns the answer into a 503 within that time
rather than after a TCP timeout. `check_readiness` is the whole check; the
route only turns it into a response.
"""
from __future__ import annotations

import functools
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from alembic.script import ScriptDirectory
from flask import Blueprint, Flask, current_app, jsonify
from redis import Redis
from werkzeug.wrappers import Response

from ..core.database import quick_connection
from ..core.logs import log_fields
from ..core.settings import Settings
from ..extensions import runtime, settings
from ..http.policy import Access, policy
from ..runtime.replica import ReplicaMonitor

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)

# How the probes' connections introduce themselves (pg_stat_activity).
PROBE_APPLICATION_NAME = "tracking-probe"


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


def redis_probe(redis_url: str, timeout: float) -> Redis:
    """A Redis client of its own whose connect and commands give up after `timeout` seconds."""
    return Redis.from_url(redis_url, socket_connect_timeout=timeout, socket_timeout=timeout)


@functools.cache
def migration_heads(directory: str) -> frozenset[str]:
    """The head revision(s) of the migrations the code ships; read once per process."""
    return frozenset(ScriptDirectory(directory).get_heads())


def _database_revisions(database_url: str, timeout: float) -> frozenset[str]:
    with quick_connection(database_url, timeout, PROBE_APPLICATION_NAME) as conn:
        conn.execute("SELECT 1")
        exists = conn.execute("SELECT to_regclass('alembic_version') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return frozenset()
        return frozenset(row[0] for row in conn.execute("SELECT version_num FROM alembic_version"))


def _redis_ping(redis_url: str, timeout: float) -> None:
    client = redis_probe(redis_url, timeout)
    try:
        client.ping()
    finally:
        client.close()


def _outcome(future: Future[Any], deadline: float, timeout: float) -> tuple[Any, str | None]:
    """The check's result and None, or None and why it failed."""
    try:
        return future.result(timeout=max(0.0, deadline - time.monotonic())), None
    except TimeoutError:
        future.cancel()
        return None, f"no answer within {timeout:g} s"
    except Exception as exc:  # any failure of a dependency means "not ready"
        return None, type(exc).__name__


@bp.get("/healthz")
@policy(Access.OPEN, budgets=(), csrf=False, logged=False)
def healthz() -> Response:
    """The process is up; no dependency is consulted."""
    return jsonify(status="ok")


def check_readiness(config: Settings, heads: frozenset[str], executor: ThreadPoolExecutor,
                    replica: ReplicaMonitor | None = None) -> dict[str, dict[str, Any]]:
    """Each dependency's state (`ok`, `fail`, `skipped` or `degraded`, and why), all checked under one deadline."""
    assert config.database_url is not None  # Settings.check() refuses to start without it
    timeout = config.readyz_timeout_seconds
    deadline = time.monotonic() + timeout
    database = executor.submit(_database_revisions, config.database_url, timeout)
    redis = executor.submit(_redis_ping, config.redis_url, timeout)
    replica_check = executor.submit(replica.check) if replica is not None else None

    checks: dict[str, dict[str, Any]] = {}
    revisions, error = _outcome(database, deadline, timeout)
    checks["postgres"] = {"status": "fail", "error": error} if error else {"status": "ok"}
    if error:
        checks["migrations"] = {"status": "skipped", "error": "postgres is unavailable"}
    elif revisions != heads:
        current = ", ".join(sorted(revisions)) or "none"
        checks["migrations"] = {"status": "fail",
                                "error": f"database at {current}, code expects {', '.join(sorted(heads))}"}
    else:
        checks["migrations"] = {"status": "ok", "revision": ", ".join(sorted(heads))}
    _, error = _outcome(redis, deadline, timeout)
    checks["redis"] = {"status": "fail", "error": error} if error else {"status": "ok"}
    if replica is not None and replica_check is not None:
        checks["replica"] = replica_report(replica, *_outcome(replica_check, deadline, timeout))
    return checks


def replica_report(replica: ReplicaMonitor, state: Any, error: str | None) -> dict[str, Any]:
    """Where reads go and why; a check that did not finish in time leaves the last verdict in force."""
    if state is None:
        return {"status": "degraded", "reads": "replica" if replica.state().usable else "primary", "error": error}
    report: dict[str, Any] = {"status": "ok" if state.usable else "degraded",
                              "reads": "replica" if state.usable else "primary", "lag_seconds": state.lag_seconds}
    if state.error:
        report["error"] = state.error
    return report


@bp.get("/readyz")
@policy(Access.OPEN, budgets=(), csrf=False, logged=False)
def readyz() -> tuple[Response, int]:
    """200 when PostgreSQL, the schema and Redis are all usable, else 503 naming what failed."""
    process = runtime()
    checks = check_readiness(settings(), migration_heads(current_app.extensions["migrate"].directory),
                             process.probe_pool, process.replica_monitor)
    # a degraded replica fails nothing: reads have moved to the primary
    failed = [name for name, check in checks.items() if check["status"] not in ("ok", "degraded")]
    if failed:
        log.warning("not ready", extra=log_fields(failed=",".join(failed),
                                                  **{name: checks[name].get("error") for name in failed}))
        return jsonify(status="unavailable", failed=failed, checks=checks), 503
    return jsonify(status="ready", checks=checks), 200
