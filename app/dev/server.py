"""`make run`: the whole service on one machine, stopped with one Ctrl-C.

Uses the PostgreSQL and Redis named by DATABASE_URL and REDIS_URL, or starts
embedded ones with their data under `.data/`, applies the migrations, then runs
the web server, the RQ worker and the scheduler until Ctrl-C or SIGTERM, or
until one of them dies. If the launcher itself is killed, its children are
killed with it (and the worker's work horse with the worker, see
`app.jobs.queue.AppWorker`); the web server's workers leave once their master is gone.

While everything runs, the run file (RUN_ENV, else `.data/run.env`) holds the
servers' addresses as shell-sourceable `KEY=value` lines, for `make cli` and
`make psql` in another terminal; it is removed when the launcher stops.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import FrameType

from ..core.database import libpq_url
from ..runtime.lifecycle import die_with_parent
from ..core.logs import redact
from ..core.settings import ConfigError, Settings, load_config
from .embedded import EmbeddedServer, start_postgres, start_redis

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
DATA_DIR = REPO_ROOT / ".data"
DEFAULT_PORT = 8080
STOP_TIMEOUT_SECONDS = 10.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
EMBEDDED_URL = "postgresql://embedded"
RUN_FILE_VARIABLE = "RUN_ENV"


class StopRequest:
    """Records a stop signal instead of raising, so it never interrupts a
    server start or the shutdown half-way; startup and the watch loop check it."""

    def __init__(self) -> None:
        self.signum: int | None = None
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._record)

    def _record(self, signum: int, _frame: FrameType | None) -> None:
        self.signum = signum

    def __bool__(self) -> bool:
        return self.signum is not None


def main() -> int:
    """Run everything; return 0 after a requested stop, non-zero after a failure."""
    stop = StopRequest()
    try:
        port = int(os.environ.get("PORT") or DEFAULT_PORT)
    except ValueError:
        return _fail(f"PORT={os.environ['PORT']!r} is not a port number")
    env = {**os.environ, "PORT": str(port), "WEB_HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1"}
    try:
        enabled = startup_settings(env).access_control_enabled
    except ConfigError as exc:
        return _fail(f"refusing to start: {exc}")
    run_file = Path(os.environ.get(RUN_FILE_VARIABLE) or DATA_DIR / "run.env").resolve()
    servers: list[EmbeddedServer] = []
    children: dict[str, subprocess.Popen[bytes]] = {}
    written = False
    try:
        database = _external_or_embedded(env, "DATABASE_URL", start_postgres, DATA_DIR / "postgres", servers)
        redis = _external_or_embedded(env, "REDIS_URL", start_redis, DATA_DIR / "redis", servers)
        if stop:
            return 0
        migrate = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
                                 cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL)
        if stop:
            return 0
        if migrate.returncode != 0:
            return _fail(f"migrations failed (exit status {migrate.returncode})")
        try:
            write_run_file(run_file, {"DATABASE_URL": libpq_url(env["DATABASE_URL"]), "REDIS_URL": env["REDIS_URL"],
                                      "PORT": str(port)})
        except OSError as exc:
            return _fail(f"cannot write the run file {run_file} ({RUN_FILE_VARIABLE}): {exc.strerror}")
        written = True
        for name, command in _commands(port).items():
            # A process group of its own: the terminal's Ctrl-C reaches only this
            # launcher, which stops each child once, and the servers after them.
            # And killed the moment this launcher dies, however it dies (SIGKILL
            # included), rather than left running on its own.
            children[name] = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                              process_group=0, preexec_fn=partial(die_with_parent, os.getpid()))
        access = "on (tokens and login required)" if enabled else "OFF: open to anyone who can reach this port"
        print(f"devserver: serving http://127.0.0.1:{port} | access control: {access} | database: {database}"
              f" | redis: {redis} | Ctrl-C stops everything", flush=True)
        print(f"devserver: in another terminal, `make cli ARGS=calculate-metrics` runs a CLI command and `make psql`"
              f" opens psql on this database (the servers' addresses are in {_shown(run_file)})", flush=True)
        while not stop:
            for name, child in children.items():
                if child.poll() is not None:
                    return _fail(f"{name} exited unexpectedly (exit status {child.returncode}),"
                                 " stopping everything")
            time.sleep(0.2)
        print(f"devserver: {signal.Signals(stop.signum).name} received, stopping everything", flush=True)
        return 0
    finally:
        if written:  # first: the file must not point at servers on their way out
            run_file.unlink(missing_ok=True)
        _stop_children(children)
        for server in reversed(servers):
            server.stop()


def startup_settings(env: dict[str, str]) -> Settings:
    """The settings every child will read, checked before anything starts.

    A refused setting (such as the public development SECRET_KEY once
    credentials are set) then stops `make run` at once with the reason, not
    later as a failed migration. An embedded database's URL is known only once
    it runs, so a placeholder stands in for it here.
    """
    return Settings.from_mapping(load_config({**env, "DATABASE_URL": env.get("DATABASE_URL") or EMBEDDED_URL}))


def write_run_file(path: Path, values: dict[str, str]) -> None:
    """Write `values` as `KEY=value` lines a shell can source, readable by this user alone.

    The URLs may hold passwords, so the file is made anew with mode 0600 (an
    existing file, left by a launcher that was killed, would keep its mode).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    lines = ["# The servers of the running `make run`; removed when it stops.\n",
             *(f"{key}={shlex.quote(value)}\n" for key, value in values.items())]
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        file.writelines(lines)


def _commands(port: int) -> dict[str, list[str]]:
    """The long-running children, by name; the venv's interpreter runs each."""
    return {
        "web": [sys.executable, "-m", "app.serving"],  # as `make serve`, on loopback (WEB_HOST in main)
        "worker": [sys.executable, "worker.py"],
        "scheduler": [sys.executable, "-m", "flask", "--app", "wsgi", "scheduler"],
    }


def _external_or_embedded(env: dict[str, str], variable: str,
                          start: Callable[[Path], EmbeddedServer], data_dir: Path,
                          servers: list[EmbeddedServer]) -> str:
    """Use the server `variable` names, or start an embedded one and export its URL.

    Returns how the startup line describes it, without passwords.
    """
    if env.get(variable):
        return f"external {redact(env[variable])}"
    server = start(data_dir)
    servers.append(server)
    env[variable] = server.url
    return f"embedded {server.url} (data in {data_dir.relative_to(REPO_ROOT)}/)"


def _shown(path: Path) -> str:
    """`path` relative to the checkout when it is inside it, as the Makefile names it."""
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def _stop_children(children: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM every child, wait for them together, then SIGKILL what is left.

    The SIGKILL goes to each child's whole process group, so web workers or
    an RQ work horse whose parent was killed are not left behind either.
    """
    for child in children.values():
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for child in children.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def _fail(message: str) -> int:
    print(f"devserver: {message}", file=sys.stderr, flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
