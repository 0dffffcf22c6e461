"""Whether reads may go to the replica, decided against real PostgreSQL servers.

The quick cases use the test server: as its own "replica" it is a primary, not in recovery, so
reads may go there with no lag; a closed port is a replica that is down; a socket that accepts
and never answers is a replica that hangs. The lag cases need a real streaming standby
(`app/dev/replica.py`, started once for the module, only by the tests that ask for it) whose
WAL replay the test pauses so it falls behind for real.
"""
from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from app.core.database import ReplicaState, libpq_url
from app.runtime.replica import CHECK_CONNECT_TIMEOUT, ReplicaMonitor
from app.dev.replica import ReplicaPair, postgres_bindir, start_replica_pair
from tests.helpers import free_port, wait_until


class Clock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sqlalchemy_style(url: str) -> str:
    """The URL as the settings hold it (DATABASE_URL may name SQLAlchemy's driver)."""
    return re.sub(r"^postgres(?:ql)?://", "postgresql+psycopg://", url)


def closed_port_url() -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/postgres"


@pytest.fixture
def server_url(database_url: str) -> str:
    return sqlalchemy_style(database_url)


def test_libpq_url_drops_sqlalchemys_driver_name_and_keeps_the_rest():
    assert (libpq_url("postgresql+psycopg://u:p@db:5433/app?sslmode=require")
            == "postgresql://u:p@db:5433/app?sslmode=require")
    assert libpq_url("postgres://u@db/app") == "postgresql://u@db/app"
    assert libpq_url("postgresql://u@db/app") == "postgresql://u@db/app"
    assert libpq_url("x:///postgresql+psycopg://") == "x:///postgresql+psycopg://"  # only a leading prefix


def test_what_libpq_receives_connects_to_the_server(server_url: str):
    with psycopg.connect(libpq_url(server_url), connect_timeout=5) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)


def test_a_server_that_is_not_in_recovery_serves_reads_with_no_lag(server_url: str):
    monitor = ReplicaMonitor(server_url, server_url, max_lag=0, interval=3600, clock=Clock())
    assert monitor.check() == ReplicaState(usable=True, lag_seconds=0.0, error=None)
    assert monitor.state() == ReplicaState(usable=True, lag_seconds=0.0, error=None)


@pytest.mark.parametrize("down", ["replica", "primary"])
def test_reads_stay_on_the_primary_while_either_server_cannot_be_reached(server_url: str, down: str):
    primary, replica = (server_url, closed_port_url()) if down == "replica" else (closed_port_url(), server_url)
    monitor = ReplicaMonitor(primary, replica, max_lag=3600, interval=3600, clock=Clock())
    assert monitor.state() == ReplicaState(usable=False, lag_seconds=None, error="OperationalError")
    assert monitor.check() == ReplicaState(usable=False, lag_seconds=None, error="OperationalError")


def test_a_failed_read_moves_reads_to_the_primary_until_the_next_check_at_the_interval_exactly(server_url: str):
    clock = Clock()
    monitor = ReplicaMonitor(server_url, server_url, max_lag=0, interval=10, clock=clock)
    assert monitor.state().usable  # the first call checks, however recent "never" is
    clock.now += 3
    monitor.mark_down(psycopg.OperationalError("connection refused"))
    down = ReplicaState(usable=False, lag_seconds=None, error="OperationalError")
    assert monitor.state() == down
    clock.now += 9.999
    assert monitor.state() == down
    clock.now += 0.001  # `interval` seconds after mark_down: checked again
    assert monitor.state() == ReplicaState(usable=True, lag_seconds=0.0)
    monitor.mark_down(psycopg.OperationalError("connection refused"))
    assert monitor.check() == ReplicaState(usable=True, lag_seconds=0.0)  # /readyz checks whatever the age


def test_with_no_interval_every_read_checks_again(server_url: str):
    clock = Clock()
    monitor = ReplicaMonitor(server_url, server_url, max_lag=0, interval=0, clock=clock)
    monitor.mark_down(psycopg.OperationalError("connection refused"))
    assert monitor.state() == ReplicaState(usable=True, lag_seconds=0.0)


class SilentServer:
    """A TCP port that accepts connections and never answers: a server that hangs."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(5)
        self.url = f"postgresql://postgres@127.0.0.1:{self.listener.getsockname()[1]}/postgres"
        self.accepted: list[socket.socket] = []

    def wait_for_client(self) -> None:
        self.accepted.append(self.listener.accept()[0])

    def close(self) -> None:
        """Hang up: a client still waiting sees the connection closed at once."""
        for connection in self.accepted:
            connection.close()
        self.listener.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def checked_in_background(monitor: ReplicaMonitor) -> tuple[threading.Thread, list[ReplicaState]]:
    found: list[ReplicaState] = []
    thread = threading.Thread(target=lambda: found.append(monitor.check()), daemon=True)
    thread.start()
    return thread, found


@pytest.mark.seconds
def test_a_replica_or_primary_that_hangs_counts_as_down_after_the_connect_timeout(server_url: str):
    """libpq's shortest connect timeout bounds the check: /readyz answers, reads move to the primary."""
    hanging_replica, hanging_primary = SilentServer(), SilentServer()
    try:
        monitors = [ReplicaMonitor(server_url, hanging_replica.url, max_lag=3600, interval=3600),
                    ReplicaMonitor(hanging_primary.url, server_url, max_lag=3600, interval=3600)]
        started = time.monotonic()
        checks = [checked_in_background(monitor) for monitor in monitors]
        for thread, found in checks:
            thread.join(timeout=max(0.0, started + CHECK_CONNECT_TIMEOUT + 2 - time.monotonic()))
            assert not thread.is_alive(), "the check waited beyond its connect timeout"
            assert found[0].usable is False and found[0].error is not None
        assert time.monotonic() - started >= CHECK_CONNECT_TIMEOUT - 0.5  # it did wait for an answer
    finally:
        hanging_replica.close()
        hanging_primary.close()


def test_while_a_check_hangs_other_readers_go_on_with_the_verdict_they_have(server_url: str, silent: SilentServer):
    monitor = ReplicaMonitor(server_url, silent.url, max_lag=3600, interval=0)
    checking, _ = checked_in_background(monitor)
    silent.wait_for_client()  # the check is now waiting on the replica
    reader = threading.Thread(target=monitor.state, daemon=True)
    reader.start()
    reader.join(timeout=1)
    assert not reader.is_alive(), "a reader waited for the check in progress"
    assert monitor.state() == ReplicaState(usable=True)  # the verdict so far (none yet: reads may go there)
    silent.close()
    checking.join(timeout=5)
    assert monitor.state().usable is False


class StartupRecorder:
    """A port that takes a PostgreSQL client's startup message, keeps the parameters it asks the
    server for, and hangs up: what a server at that address would have been told."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(5)
        self.url = f"postgresql://postgres@127.0.0.1:{self.listener.getsockname()[1]}/postgres"
        self.parameters: dict[str, str] = {}
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        connection = self.listener.accept()[0]
        with connection, self.listener:
            connection.settimeout(5)
            while True:
                length = int.from_bytes(self._read(connection, 4), "big")
                body = self._read(connection, length - 4)
                if int.from_bytes(body[:4], "big") != 196608:  # an SSL or GSS encryption request: refuse it
                    connection.sendall(b"N")
                    continue
                fields = body[4:].split(b"\0")
                self.parameters = {key.decode(): value.decode() for key, value in zip(fields[::2], fields[1::2]) if key}
                return

    @staticmethod
    def _read(connection: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = connection.recv(size - len(data))
            assert chunk, "the client hung up"
            data += chunk
        return data


def statement_timeout_ms(options: str) -> int:
    """The `statement_timeout` that libpq `options` set for the session, in milliseconds."""
    found = re.fullmatch(r"-c statement_timeout=(\d+)", options)
    assert found, options
    return int(found.group(1))


def test_the_checks_statements_are_cancelled_by_each_server_after_the_connect_timeout(server_url: str):
    """A server that accepts the check's connection and then stalls cannot hold /readyz or a read beyond it."""
    primary, replica = StartupRecorder(), StartupRecorder()
    ReplicaMonitor(primary.url, server_url, max_lag=3600, interval=3600).check()
    ReplicaMonitor(server_url, replica.url, max_lag=3600, interval=3600).check()
    for server in (primary, replica):
        server.thread.join(timeout=5)
        assert statement_timeout_ms(server.parameters.get("options", "")) == CHECK_CONNECT_TIMEOUT * 1000


# --- a real streaming standby ---------------------------------------------------------------

BINDIR = postgres_bindir()


@pytest.fixture(scope="module")
def pair() -> Iterator[ReplicaPair]:
    if BINDIR is None:
        pytest.skip("no PostgreSQL binaries (initdb, pg_ctl, pg_basebackup)")
    pair = start_replica_pair(BINDIR)
    yield pair
    pair.stop()


def paused(pair: ReplicaPair) -> None:
    """Stop the standby's replay and wait until it has really stopped."""
    pair.pause_replay()
    with psycopg.connect(pair.standby.url(), autocommit=True) as standby:
        wait_until(lambda: standby.execute("SELECT pg_get_wal_replay_pause_state()").fetchone() == ("paused",),
                   timeout=10, what="replay pauses")


def written(pair: ReplicaPair) -> None:
    """A transaction on the primary, which the standby has to replay to catch up."""
    pair.primary.execute("CREATE TABLE IF NOT EXISTS ticks (at timestamptz); INSERT INTO ticks VALUES (now())")


@pytest.mark.seconds
def test_a_standby_is_used_while_caught_up_or_within_the_lag_limit_and_not_beyond(pair: ReplicaPair):
    primary, standby = sqlalchemy_style(pair.primary.url()), sqlalchemy_style(pair.standby.url())
    tolerant = ReplicaMonitor(primary, standby, max_lag=3600, interval=0)
    strict = ReplicaMonitor(primary, standby, max_lag=0, interval=0)
    wait_until(lambda: strict.check() == ReplicaState(usable=True, lag_seconds=0.0), timeout=10,
               what="the fresh standby has replayed all there is")

    # Behind, and it has replayed no transaction since it started: how far behind is unknown.
    paused(pair)
    written(pair)
    unknown = tolerant.check()
    assert (unknown.usable, unknown.lag_seconds) == (False, None)
    assert unknown.error == "an unknown time behind the primary (limit 3600 s)"

    pair.resume_replay()
    wait_until(lambda: strict.check() == ReplicaState(usable=True, lag_seconds=0.0), timeout=10,
               what="the standby catches up")

    # Behind by the age of the last transaction it replayed: within one limit, beyond the other.
    paused(pair)
    written(pair)
    time.sleep(0.1)
    within = tolerant.check()
    assert within.usable is True and within.error is None
    assert within.lag_seconds is not None and 0.1 <= within.lag_seconds < 60
    beyond = strict.check()
    assert beyond.usable is False and beyond.lag_seconds is not None and beyond.lag_seconds >= within.lag_seconds
    assert beyond.error == f"{beyond.lag_seconds:.1f} s behind the primary (limit 0 s)"
    pair.resume_replay()
