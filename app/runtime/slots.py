"""How many answers of each streaming route a process has in flight, against the bound its policy declares."""
from __future__ import annotations

import threading


class StreamSlots:
    """Counts per route name; a route at its bound takes no more until one of its answers ends."""

    def __init__(self) -> None:
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, route: str, bound: int) -> bool:
        """One slot of `route`, if fewer than `bound` are taken."""
        with self._lock:
            held = self._held.get(route, 0)
            if held >= bound:
                return False
            self._held[route] = held + 1
            return True

    def give_back(self, route: str) -> None:
        with self._lock:
            self._held[route] -= 1
