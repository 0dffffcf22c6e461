"""How many long-running answers (exports) a process has in flight, per pool of routes and per client."""
from __future__ import annotations

import threading
from collections import Counter


class StreamSlots:
    """Slots held per pool, in total and per client; a full pool or client takes no more until an answer ends."""

    def __init__(self) -> None:
        self._held: Counter[tuple[str, str | None]] = Counter()  # (pool, None) is the pool's total
        self._lock = threading.Lock()

    def take(self, pool: str, client: str, total: int, per_client: int) -> str | None:
        """One slot of `pool` for `client`; None when taken, else which bound is full: "total" or "client"."""
        with self._lock:
            if self._held[pool, client] >= per_client:
                return "client"
            if self._held[pool, None] >= total:
                return "total"
            self._held[pool, client] += 1
            self._held[pool, None] += 1
            return None

    def give_back(self, pool: str, client: str) -> None:
        with self._lock:
            self._held[pool, None] -= 1
            self._held[pool, client] -= 1
            if not self._held[pool, client]:
                del self._held[pool, client]  # memory follows the clients streaming now
