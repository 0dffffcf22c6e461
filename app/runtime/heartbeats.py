"""Heartbeats between a server's master and the workers it forks, and the workers' death with their master.

The master makes a directory of its own (mode 0700, a name nobody can
guess; on a RAM disk when there is one, so a slow disk cannot stall a
worker) and names it, with its pid, in the environment its forked workers
inherit. Each worker follows its master's death and touches a file named by
its pid every second from its event loop. The master reads how long each
worker has been silent on its own monotonic clock, from the moment the
worker's file last changed, so a step of the wall clock silences nobody.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

from .lifecycle import die_with_parent

INTERVAL_SECONDS = 1.0
ROOT = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
MASTER_VARIABLE = "TRACKING_WEB_MASTER"
DIRECTORY_VARIABLE = "TRACKING_WEB_HEARTBEATS"


class Heartbeats:
    """The master's side: the directory its workers beat into, and how long each has been silent."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="tracking-web-", dir=ROOT))
        os.environ[DIRECTORY_VARIABLE] = str(self.directory)
        os.environ[MASTER_VARIABLE] = str(os.getpid())
        self._changed: dict[int, tuple[float, float]] = {}  # pid: (its file's last mtime, when that was seen)

    def silence(self, pid: int) -> float | None:
        """Seconds since worker `pid` last beat; None if it has not beaten yet (it is still loading)."""
        try:
            mtime = (self.directory / str(pid)).stat().st_mtime
        except FileNotFoundError:
            return None
        now = time.monotonic()
        if self._changed.get(pid, (None,))[0] != mtime:
            self._changed[pid] = (mtime, now)
        return now - self._changed[pid][1]

    def forget(self, pid: int) -> None:
        self._changed.pop(pid, None)
        (self.directory / str(pid)).unlink(missing_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def beat(loop: asyncio.AbstractEventLoop) -> None:
    """A worker's side, once its loop runs: go when the master goes, and beat from the loop every second.

    A process not forked by a master with `Heartbeats` (a bare `granian wsgi:front`) has no master to
    follow and nobody listening.
    """
    if MASTER_VARIABLE not in os.environ:
        return
    # A master killed outright leaves none, at once: a graceful stop is the master's to run (it signals its
    # workers and waits for them), so a worker outliving it has nobody to bound its shutdown.
    die_with_parent(int(os.environ[MASTER_VARIABLE]), signal.SIGKILL)
    file = Path(os.environ[DIRECTORY_VARIABLE]) / str(os.getpid())

    def tick() -> None:
        with contextlib.suppress(OSError):  # a beat that fails is a beat missed, not the end of beating
            file.touch()
        loop.call_later(INTERVAL_SECONDS, tick)

    tick()
