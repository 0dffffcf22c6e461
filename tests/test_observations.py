"""Prometheus observations queued by requests and applied by a thread of the process (app.runtime.observations).

What a forked child does with its parent's queue is the runtime's rule: tests/test_runtime.py."""
from __future__ import annotations

import threading

from app.runtime.observations import Observations
from tests.helpers import wait_until


def test_queued_observations_are_applied_by_the_process_thread_without_a_scrape():
    seen: list[float] = []
    pending = Observations(interval=0.01)
    pending.add(seen.append, 1.0)
    pending.add(seen.append, 2.5)
    assert wait_until(lambda: seen == [1.0, 2.5], timeout=5)


def test_a_failing_series_loses_only_its_own_observations_and_a_scrape_still_answers(client, caplog):
    seen: list[float] = []

    def broken(amount: float) -> None:
        raise ValueError(amount)

    pending = Observations(interval=3600)
    for amount in range(5):
        pending.add(broken, amount)
        pending.add(seen.append, amount)
    pending.apply()  # what a scrape does first: it must not raise
    assert seen == [0, 1, 2, 3, 4]
    assert "Prometheus observations lost: 5 failed (ValueError), 0 dropped" in caplog.text
    assert client.get("/internal/metrics").status_code == 200


def test_observations_beyond_the_limit_are_dropped_and_the_drops_said(caplog):
    seen: list[float] = []
    pending = Observations(interval=3600, limit=3)
    for amount in range(5):
        pending.add(seen.append, amount)
    pending.apply()
    assert seen == [0, 1, 2]
    assert "0 failed (none), 2 dropped because 3 were waiting" in caplog.text
    pending.add(seen.append, 5)  # room again once applied
    pending.apply()
    assert seen == [0, 1, 2, 5]


def test_a_thread_that_could_not_start_is_started_by_a_later_observation(monkeypatch, caplog):
    seen: list[float] = []
    start = threading.Thread.start
    refusals = [RuntimeError("can't start new thread")]

    def start_once_refused(thread: threading.Thread) -> None:
        if refusals:
            raise refusals.pop()
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", start_once_refused)
    pending = Observations(interval=0.01)
    pending.add(seen.append, 1.0)  # no thread to be had: the observation waits, the request goes on
    assert "could not start the Prometheus observations thread" in caplog.text and seen == []
    pending.add(seen.append, 2.0)
    assert wait_until(lambda: seen == [1.0, 2.0], timeout=5)
