"""The benchmark's web servers, and what /proc says about their workers.

Two kinds, each with the same workers and threads:

- the service's own server (`python -m app.serving`, granian and the front),
  which serves the service and, with the same code, the reference apps;
- gunicorn gthread, the server the service ran on before, for the reference
  apps: every setting on the command line, started in a scratch directory, so
  neither a configuration file nor GUNICORN_CMD_ARGS changes them.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from app.dev.fixtures import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ServerSettings:
    workers: int = 2
    threads: int = 4

    def describe(self) -> str:
        return (f"{self.workers} workers x {self.threads} threads on every server, no access log: the service's "
                "(`python -m app.serving`, granian with the front) and gunicorn gthread")


def _gunicorn_has(option: str) -> bool:
    from gunicorn.config import KNOWN_SETTINGS
    return any(option in setting.cli for setting in KNOWN_SETTINGS if setting.cli)


class BenchServer:
    """One server master with its workers, started and stopped by the benchmark: `kind` is "serving" (the
    service's own server, `app` a front such as `wsgi:front`) or "gunicorn" (`app` a WSGI app)."""

    def __init__(self, name: str, app: str, env: dict[str, str], settings: ServerSettings, scratch: Path,
                 kind: str = "serving") -> None:
        self.name = name
        self.kind = kind
        self.application_name = f"bench-{name}"
        self.app = app
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.settings = settings
        self.env = {key: value for key, value in env.items() if key != "GUNICORN_CMD_ARGS"}
        self.env["PYTHONPATH"] = str(REPO_ROOT)
        self.scratch = scratch
        self.log_path = scratch / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        if self.kind == "serving":
            self.env.update({"PORT": str(self.port), "WEB_HOST": "127.0.0.1", "WEB_WORKERS": str(self.settings.workers),
                             "WEB_THREADS": str(self.settings.threads)})
            return [sys.executable, "-m", "app.serving", self.app]
        command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}",
                   "--worker-class", "gthread", "--workers", str(self.settings.workers),
                   "--threads", str(self.settings.threads), "--log-level", "warning"]
        if _gunicorn_has("--no-control-socket"):
            command.append("--no-control-socket")  # several masters at once must not share one socket
        return [*command, self.app]

    def start(self, timeout: float = 60.0) -> None:
        """Start it and wait until every worker has booted and the port answers."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(), cwd=self.scratch, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start: {self.log_path.read_text()[-2000:]}")
            if len(self.worker_pids()) == self.settings.workers and self._accepts():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start within {timeout:.0f} s: {self.log_path.read_text()[-2000:]}")

    def _accepts(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True
        return False

    def worker_pids(self) -> list[int]:
        if self.process is None:
            return []
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        with contextlib.suppress(OSError):
            return [int(pid) for pid in children.read_text().split()]
        return []

    def workers_cpu_seconds(self) -> float:
        """User plus system CPU time the workers have used so far."""
        return sum(cpu_seconds(pid) for pid in self.worker_pids())

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until the workers stop using CPU: requests still in flight when the load generator
        stopped have finished, so their rows cannot land in the next measurement's empty table."""
        deadline = time.monotonic() + timeout
        used = self.workers_cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now_used = self.workers_cpu_seconds()
            if now_used - used < 0.01:
                return
            used = now_used

    def stop(self) -> None:
        """SIGTERM the master, then SIGKILL its whole session if it lingers."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat (fields 14 and 15)."""
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return 0.0


def rss_mib(pid: int) -> float:
    """Resident set size of a process, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")
