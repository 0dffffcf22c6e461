"""What each per-request hook costs, one by one: the app's before- and after-request functions timed
in-process, inside a request context for `POST /api/event`, the way Flask calls them."""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr
from typing import Any

from flask import Flask

BODY = b'{"user_id": 42, "action": "page_view", "metadata": {"page": "/home"}}'


def _best_us(call: Callable[[], Any], calls: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - began) / calls * 1e6)
    return best


def _name(function: Callable[..., Any]) -> str:
    return f"{function.__module__.removeprefix('app.')}.{function.__qualname__.replace('.<locals>', '')}"


@contextmanager
def _request_lines_written() -> Iterator[None]:
    """The request log at INFO, as deployed by default (the bench's servers log warnings only), into /dev/null."""
    logger = logging.getLogger("app.request")
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with open(os.devnull, "w") as sink, redirect_stderr(sink):
            yield
    finally:
        logger.setLevel(level)


def hook_costs(app: Flask, *, calls: int = 2000, rounds: int = 5) -> list[tuple[str, float]]:
    """Microseconds per call of every app-wide before- and after-request hook, in the order Flask runs them."""
    costs = []
    with _request_lines_written(), app.test_request_context("/api/event", method="POST", data=BODY, content_type="application/json",
                                  environ_base={"REMOTE_ADDR": "203.0.113.9"}):
        for before in app.before_request_funcs.get(None, []):
            before()  # what the hook sets up is there for the after hooks
            costs.append((_name(before), _best_us(before, calls, rounds)))
        response = app.response_class(BODY, status=201, mimetype="application/json")
        for after in reversed(app.after_request_funcs.get(None, [])):
            costs.append((_name(after), _best_us(lambda after=after: after(response), calls, rounds)))
    return costs


def describe(costs: list[tuple[str, float]]) -> str:
    total = sum(cost for _, cost in costs)
    return ("Per-request hooks, CPU per call in-process (best of 5 rounds, a POST /api/event request context, "
            "the request log at INFO), "
            f"{total:.1f} us in all: " + ", ".join(f"{name} {cost:.1f} us" for name, cost in costs) + ".")
