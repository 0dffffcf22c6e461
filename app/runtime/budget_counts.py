"""Budget counts kept in the process and reconciled with Redis in the background.

The busy budgets (ingestion, reads) are not asked of Redis on every request.
Each web process counts its own hits per budget, payer and fixed window, and
decides from what it knows: the window's count in Redis as of its last
sharing plus its own hits since. A thread adds those hits to Redis every
`interval` seconds (one pipelined round trip for all the windows that had
hits) and reads back the totals, which brings in the other processes' hits. A
process meeting a payer's window for the first time reads its shared count
once, so it does not start from nothing.

So a budget holds across processes up to a bounded overshoot: a process sees
the others' hits as of its own last sharing, so what they admitted in about
the last two intervals can get through on top of the limit (and in the first
interval of a window, before anyone has shared, each process may admit up to
the whole budget). Within one process the limit is exact. While Redis is
away the hits wait for the next sharing (tried again `pause_after_failure`
seconds after a failure, like the breakers do) and each process still holds
the limit on its own.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# Windows sent to Redis per round trip when sharing (two commands each).
_PIPELINE_ENTRIES = 500


@dataclass
class _Count:
    """One budget's window, for one payer: its total in Redis as last read, and this process's hits since."""

    key: str
    limit: int
    ends: float  # the window's end, in epoch seconds
    shared: int = 0
    pending: int = 0


class BudgetCounts:
    """Fixed-window counts of one process, reconciled with Redis every `interval` seconds by a thread of its own,
    started by the first hit."""

    def __init__(self, redis: Redis, *, prefix: str, interval: float, pause_after_failure: float = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.prefix = prefix
        self.interval = interval
        self.pause_after_failure = pause_after_failure
        self.clock = clock
        self._retry_at = float("-inf")  # while Redis is failing, when to try it again
        self._counts: dict[str, _Count] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def hit(self, scope: str, payer: str, amount: int, seconds: int, cost: int = 1) -> int | None:
        """Count `cost` hits against `amount` per `seconds`, all or none; seconds until there is room when they
        do not fit, else None."""
        now = self.clock()
        start = math.floor(now / seconds) * seconds
        key = f"{self.prefix}:{scope}:{payer}:{start}"
        with self._lock:
            if (self._thread is None or not self._thread.is_alive()) and not self._stop.is_set():
                self._start()
            count = self._counts.get(key)
            if count is not None:
                return self._take(count, now, cost)
        fresh = _Count(key, amount, start + seconds, shared=self._first_sight(key))
        with self._lock:
            return self._take(self._counts.setdefault(key, fresh), now, cost)

    @staticmethod
    def _take(count: _Count, now: float, cost: int) -> int | None:
        """`cost` hits if the window has room for all of them (called with the lock held)."""
        if count.shared + count.pending + cost > count.limit:
            return max(1, math.ceil(count.ends - now))
        count.pending += cost
        return None

    def _first_sight(self, key: str) -> int:
        """The window's count in Redis when this process meets a payer's window for the first time.

        One read per payer and window (not per request), so a process that has not
        yet reconciled does not start from nothing; skipped while Redis is failing.
        """
        if self._failing:
            return 0
        try:
            return int(self.redis.get(key) or 0)
        except RedisError as exc:
            self._note_failure(exc)
            return 0

    def _note_failure(self, exc: RedisError) -> None:
        if not self._failing:
            log.warning("rate limit counts not shared while Redis is unavailable: %s", exc.__class__.__name__)
        self._failing = True
        self._retry_at = time.monotonic() + self.pause_after_failure

    def reconcile(self) -> None:
        """Add this process's new hits to Redis and learn those windows' totals.

        Only windows with hits since the last round are sent. A window that ended,
        or that had no hit for a whole round, is forgotten (its next hit reads the
        shared count again), so memory follows the clients active right now, also
        while Redis is away.
        """
        now = self.clock()
        with self._lock:
            for key in [key for key, count in self._counts.items() if count.ends <= now or not count.pending]:
                del self._counts[key]
            sent = [(count, count.pending) for count in self._counts.values()]
        if not sent or (self._failing and time.monotonic() < self._retry_at):
            return  # nothing to share, or Redis failed moments ago: the hits wait, counted here
        totals: list[int] = []
        try:
            for first in range(0, len(sent), _PIPELINE_ENTRIES):
                # MULTI/EXEC: a key never gets its count without its expiry
                pipe = self.redis.pipeline(transaction=True)
                for count, pending in sent[first:first + _PIPELINE_ENTRIES]:
                    pipe.incrby(count.key, pending)
                    pipe.expireat(count.key, math.ceil(count.ends) + 1)
                totals += pipe.execute()[::2]
        except RedisError as exc:
            self._note_failure(exc)
        else:
            self._failing = False
        with self._lock:
            for (count, pending), total in zip(sent, totals):  # the chunks that went through
                count.pending -= pending
                count.shared = int(total)

    def close(self) -> None:
        """Stop the reconciling thread after one last sharing (a process that simply exits loses at most
        its last interval's hits, which only makes the others' count lower)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _start(self) -> None:
        """Start the reconciling thread (called with the lock held)."""
        self._thread = threading.Thread(target=self._run, name="budget-counts", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            stopping = self._stop.wait(self.interval)
            try:
                self.reconcile()
            except Exception:  # never let the thread die: the next round tries again
                log.exception("rate limit counts: reconciliation failed")
            if stopping:
                return
