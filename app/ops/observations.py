"""Prometheus observations made on the request path, applied by one thread per process.

prometheus_client serialises every observation of a process on one lock and,
with PROMETHEUS_MULTIPROC_DIR, writes each to a memory-mapped file under it:
a request makes six, so a web worker's threads queue on that lock (the bench
profile of `POST /api/event` spent 7% of its samples there). A request only
appends its observations to a queue instead, which needs no lock of ours; a
thread of the process applies them every `interval`, and a scrape applies
its own process's first. So a scrape sees another worker's observations at
most `interval` late, and a worker killed outright loses at most that much
of its counts, never an event.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

Observe = Callable[[float], None]


class Observations:
    """A process's pending observations: each is a series' `inc` or `observe`, and its amount.

    At most `limit` wait: should the applier fall behind or stop, later observations are dropped (and
    the drops logged) rather than held in memory without end; a failing series loses its own
    observations only.
    """

    def __init__(self, interval: float, limit: int = 100_000) -> None:
        self.interval = interval
        self.limit = limit
        self._pending: deque[tuple[Observe, float]] = deque()
        self._applying = threading.Lock()
        self._started = False
        self._dropped = 0
        # a forked child starts empty: what its parent queued is the parent's to apply
        os.register_at_fork(after_in_child=self._forget)

    def add(self, observe: Observe, amount: float) -> None:
        """Queue one observation; the first in a process (a forked worker's too) starts its applier."""
        if len(self._pending) >= self.limit:
            self._dropped += 1
            return
        self._pending.append((observe, amount))
        if not self._started:
            self._start()

    def apply(self) -> None:
        """Hand every queued observation to prometheus_client now; never raises (a scrape calls it)."""
        failed: dict[str, int] = {}
        with self._applying:
            dropped, self._dropped = self._dropped, 0
            while self._pending:
                observe, amount = self._pending.popleft()
                try:
                    observe(amount)
                except Exception as exc:  # this series' own loss: the others are still counted
                    failed[type(exc).__name__] = failed.get(type(exc).__name__, 0) + 1
        if failed or dropped:
            log.error("Prometheus observations lost: %d failed (%s), %d dropped because %d were waiting",
                      sum(failed.values()), ", ".join(sorted(failed)) or "none", dropped, self.limit)

    def _forget(self) -> None:
        """In a forked child: no queue, no lock held, no thread (threads do not survive a fork)."""
        self._pending = deque()
        self._applying = threading.Lock()
        self._started = False
        self._dropped = 0

    def _start(self) -> None:
        with self._applying:
            if self._started:
                return
            try:
                threading.Thread(target=self._run, name="prometheus-observations", daemon=True).start()
            except RuntimeError:  # no thread to be had now (a pids limit): the next observation tries again
                log.warning("could not start the Prometheus observations thread; scrapes still apply them")
                return
            self._started = True
        atexit.register(self.apply)  # a worker stopping in good order counts its last requests

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            self.apply()
