"""A circuit breaker: after a dependency fails, stop asking it for a while.

A dependency that hangs costs every caller its full timeout. Once a few calls
in a row have failed, the breaker *opens*: calls are refused at once, without
touching the dependency, for `reset_seconds`. Then it *half-opens*: one call
is let through as a trial; its success closes the breaker, its failure opens
it for another period. One breaker per dependency and process, shared by
every thread. What a refusal raises is the caller's choice (`open_error`),
so each adapter keeps the exception types its handlers already know.

Callers whose failures cost differently get breakers of their own: the
rate limiter's tight timeout may fire when the machine is merely busy, and
that must not refuse the job endpoints too.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

FailureTypes = tuple[type[BaseException], ...]


class CircuitOpenError(Exception):
    """A call refused without trying, because the dependency failed moments ago."""


class CircuitBreaker:
    """Counts consecutive failures of one dependency and refuses calls while it is presumed down."""

    def __init__(self, name: str, *, reset_seconds: float, failure_threshold: int = 3,
                 open_error: Callable[[str], Exception] = CircuitOpenError,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.reset_seconds = reset_seconds
        self.failure_threshold = failure_threshold
        self.open_error = open_error
        self.clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._open_until: float | None = None
        self._trial_running = False

    def allow(self) -> bool:
        """May a call go to the dependency now? Half-open, only the first caller may (the trial)."""
        with self._lock:
            if self._open_until is None:
                return True
            if self.clock() < self._open_until or self._trial_running:
                return False
            self._trial_running = True
            return True

    def succeeded(self) -> None:
        with self._lock:
            self._failures = 0
            self._open_until = None
            self._trial_running = False

    def failed(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial_running or self._failures >= self.failure_threshold:
                self._open_until = self.clock() + self.reset_seconds
            self._trial_running = False

    @contextmanager
    def guard(self, failures: FailureTypes = (Exception,)) -> Iterator[None]:
        """Run the block against the dependency, or raise `open_error` at once while the breaker is open.

        An exception of `failures` counts against the dependency; any other
        exception (a missing key, a bad request) says nothing about it.
        """
        if not self.allow():
            raise self.open_error(f"{self.name} skipped for up to {self.reset_seconds:g} s after failures")
        try:
            yield
        except failures:
            self.failed()
            raise
        except BaseException:
            self._release_trial()  # no verdict on the dependency: let the next call try
            raise
        self.succeeded()

    def _release_trial(self) -> None:
        with self._lock:
            self._trial_running = False
