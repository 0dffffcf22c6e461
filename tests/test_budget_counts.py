"""Rate-limit counts kept in each process and shared through Redis in the background (app/runtime/budget_counts.py):
exact within a process, shared across processes after a reconciliation, and still a limit while Redis is away.

Two `BudgetCounts` on one Redis namespace stand for two web processes; the tests reconcile by hand instead of
waiting for the background thread, and move a clock instead of sleeping.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.runtime.budget_counts import BudgetCounts
from tests.helpers import free_port

MINUTE = 60


class Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


@pytest.fixture
def redis(app_config) -> Iterator[Redis]:
    client = Redis.from_url(app_config["REDIS_URL"], socket_timeout=2)
    yield client
    client.close()


@pytest.fixture
def processes(redis) -> Iterator[tuple[BudgetCounts, BudgetCounts, Clock]]:
    """Two processes' counts on one fresh prefix, with a clock at the start of a minute."""
    prefix = f"test-local-counts-{uuid.uuid4().hex}"
    clock = Clock(1_800_000_000.0)
    first, second = (BudgetCounts(redis, prefix=prefix, interval=3600, clock=clock) for _ in range(2))
    yield first, second, clock
    first.close()
    second.close()
    for key in redis.scan_iter(f"{prefix}:*"):
        redis.delete(key)


def admitted(counts: BudgetCounts, tries: int, payer: str = "client-a", amount: int = 5) -> int:
    return sum(1 for _ in range(tries) if counts.hit("ingest", payer, amount, MINUTE) is None)


def test_within_one_process_the_limit_is_exact_and_says_when_there_is_room(processes):
    first, _, clock = processes
    clock.at += 20
    assert admitted(first, 8) == 5
    assert first.hit("ingest", "client-a", 5, MINUTE) == 40  # the window ends 40 s later
    assert admitted(first, 3, payer="client-b") == 3  # another payer has its own count
    clock.at += 40  # the next window
    assert admitted(first, 8) == 5


def test_hits_of_other_processes_count_once_reconciled(processes, redis):
    first, second, _ = processes
    assert admitted(first, 3) == 3
    first.reconcile()
    assert admitted(second, 1) == 1  # meeting the window, it read the 3 shared hits: 4 of 5
    second.reconcile()
    assert admitted(second, 5) == 1
    second.reconcile()
    first.reconcile()
    assert admitted(first, 5) == 0
    assert sum(int(redis.get(key)) for key in redis.scan_iter(f"{first.prefix}:*")) == 5


def test_the_overshoot_is_what_other_processes_admitted_since_the_last_reconciliation(processes):
    first, second, _ = processes
    assert admitted(first, 5) == 5
    assert admitted(second, 5) == 5  # neither has heard of the other yet: the documented overshoot
    first.reconcile()
    second.reconcile()
    assert admitted(first, 1) == admitted(second, 1) == 0


def test_while_redis_is_away_each_process_still_holds_the_limit_and_shares_its_hits_later(processes, redis):
    first, _, clock = processes
    assert admitted(first, 1) == 1
    first.reconcile()
    away = Redis(port=free_port(), socket_connect_timeout=0.2, socket_timeout=0.2, retry=Retry(NoBackoff(), 0))
    stranded = BudgetCounts(away, prefix=first.prefix, interval=3600, pause_after_failure=0, clock=clock)
    assert admitted(stranded, 8) == 5
    stranded.reconcile()  # fails: the hits wait for Redis
    assert admitted(stranded, 1) == 0
    stranded.redis = redis
    stranded.reconcile()
    first.reconcile()
    assert admitted(first, 1) == 0  # the stranded process's five hits reached Redis
    stranded.close()


def test_ended_windows_are_forgotten_once_shared(processes):
    first, _, clock = processes
    admitted(first, 2)
    clock.at += MINUTE
    first.reconcile()  # shares the two hits of the ended window, then forgets it
    first.reconcile()
    assert first._counts == {}


def test_memory_follows_the_clients_active_now_even_while_redis_is_away(processes):
    first, _, clock = processes
    stranded = BudgetCounts(Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)),
                           prefix=first.prefix, interval=3600, clock=clock)
    for payer in range(100):
        stranded.hit("ingest", f"client-{payer}", 5, MINUTE)
    stranded.reconcile()  # Redis is away: the hits wait
    assert len(stranded._counts) == 100
    clock.at += MINUTE  # every one of those windows has ended: nobody is judged by them again
    stranded.hit("ingest", "client-0", 5, MINUTE)
    stranded.reconcile()
    assert len(stranded._counts) == 1
    stranded.close()


def test_a_window_without_hits_for_a_round_is_forgotten_and_read_again_at_its_next_hit(processes):
    first, second, _ = processes
    assert admitted(first, 2) == 2
    first.reconcile()  # shares 2
    first.reconcile()  # no hit since: forgotten
    assert first._counts == {}
    assert admitted(second, 5) == 3
    second.reconcile()
    assert admitted(first, 1) == 0  # met again, it reads the shared 5
