"""The circuit breaker's contract, on a clock the test moves: when it opens, how long it stays open,
the one trial it lets through half-open, and what closes it again.

What a user notices: after Redis fails a few times in a row the job endpoints answer at once
(refused) instead of each waiting out a timeout, and they go back to Redis by themselves.
"""
from __future__ import annotations

import pytest

from app.runtime.breaker import CircuitBreaker, CircuitOpenError


class Clock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Outage(ConnectionError):
    """The dependency is down (one of the failure types the breaker counts)."""


def call(breaker: CircuitBreaker, outcome: type[BaseException] | None = None) -> str:
    """One call to the dependency through the breaker; `outcome` is what the dependency raises, if anything."""
    with breaker.guard((ConnectionError,)):
        if outcome is not None:
            raise outcome()
    return "answered"


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        with pytest.raises(Outage):
            call(breaker, Outage)


def test_the_default_breaker_opens_on_the_third_consecutive_failure_not_before():
    breaker = CircuitBreaker("redis", reset_seconds=5, clock=Clock())
    fail(breaker, 2)
    assert call(breaker) == "answered"  # two failures: still asking the dependency (and the count starts over)
    fail(breaker, 2)
    assert breaker.allow()
    fail(breaker, 1)
    with pytest.raises(CircuitOpenError, match="^redis skipped for up to 5 s after failures$"):
        call(breaker)


def test_a_custom_threshold_opens_after_exactly_that_many_failures():
    breaker = CircuitBreaker("thing", reset_seconds=5, failure_threshold=1, open_error=LookupError, clock=Clock())
    assert call(breaker) == "answered"
    fail(breaker, 1)
    with pytest.raises(LookupError, match="^thing skipped"):
        call(breaker)


def test_it_stays_open_until_reset_seconds_have_passed_to_the_instant():
    clock = Clock()
    breaker = CircuitBreaker("thing", reset_seconds=5, failure_threshold=2, clock=clock)
    fail(breaker, 2)
    opened = clock.now
    for now in (opened, opened + 2.5, opened + 4.999):
        clock.now = now
        assert not breaker.allow()
        with pytest.raises(CircuitOpenError):
            call(breaker)
    clock.now = opened + 5  # exactly reset_seconds later: half-open
    assert call(breaker) == "answered"


def test_half_open_lets_exactly_one_trial_through_and_its_success_closes_the_breaker():
    clock = Clock()
    breaker = CircuitBreaker("thing", reset_seconds=5, failure_threshold=2, clock=clock)
    fail(breaker, 2)
    clock.now += 5
    assert breaker.allow()        # this caller holds the trial...
    assert not breaker.allow()    # ...so the others are still refused
    assert not breaker.allow()
    breaker.succeeded()
    assert breaker.allow() and breaker.allow()
    # closed again, with the count reset: the same number of failures is needed to open it
    fail(breaker, 1)
    assert call(breaker) == "answered"
    fail(breaker, 1)
    assert breaker.allow()
    fail(breaker, 1)
    assert not breaker.allow()


def test_a_failed_trial_opens_the_breaker_for_another_full_period():
    clock = Clock()
    breaker = CircuitBreaker("thing", reset_seconds=5, failure_threshold=2, clock=clock)
    fail(breaker, 2)
    clock.now += 5
    fail(breaker, 1)  # the trial
    reopened = clock.now
    clock.now = reopened + 4.999
    with pytest.raises(CircuitOpenError):
        call(breaker)
    clock.now = reopened + 5
    assert call(breaker) == "answered"
    assert call(breaker) == "answered"  # and that trial's success closed it


def test_a_trial_that_fails_for_another_reason_lets_the_next_caller_try():
    clock = Clock()
    breaker = CircuitBreaker("thing", reset_seconds=5, failure_threshold=2, clock=clock)
    fail(breaker, 2)
    clock.now += 5
    with pytest.raises(KeyError):  # the dependency answered, with an error of the caller's making
        call(breaker, KeyError)
    assert breaker.allow()         # no verdict either way: the next call is the trial
    assert not breaker.allow()


def test_errors_that_are_not_failures_of_the_dependency_do_not_count():
    breaker = CircuitBreaker("thing", reset_seconds=5, failure_threshold=2, clock=Clock())
    for _ in range(5):
        with pytest.raises(KeyError):
            call(breaker, KeyError)
    assert call(breaker) == "answered"
