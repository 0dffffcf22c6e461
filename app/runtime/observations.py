"""Prometheus observations made on the request path, applied by a thread of the process.

prometheus_client serialises every observation of a process on one lock and,
with PROMETHEUS_MULTIPROC_DIR, writes each to a memory-mapped file under it,
so a web worker's threads would queue on that lock. A request only appends
its observations to a queue instead, which needs no lock of ours; a thread
applies them every `interval`, and a scrape applies its own process's first.
So a scrape sees another worker's observations at most `interval` late, and a
worker killed outright loses at most that much of its counts, never an event.
"""
from __future__ import annotations

import logging
import threading
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
        self._stop = threading.Event()
        self._dropped = 0

    def add(self, observe: Observe, amount: float) -> None:
        """Queue one observation; the first starts the applying thread."""
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

    def close(self) -> None:
        """Apply what waits and stop the thread."""
        self._stop.set()
        self.apply()

    def _start(self) -> None:
        with self._applying:
            if self._started or self._stop.is_set():
                return
            try:
                threading.Thread(target=self._run, name="prometheus-observations", daemon=True).start()
            except RuntimeError:  # no thread to be had now (a pids limit): the next observation tries again
                log.warning("could not start the Prometheus observations thread; scrapes still apply them")
                return
            self._started = True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.apply()
