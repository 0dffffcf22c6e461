"""msgspec against pydantic v2 on the bench's batch: the measurement behind app/core/request_bodies.py.

Both libraries get the same declaration (types, bounds, unknown fields refused,
strict: no string for an integer) and the same body; `json.loads` with no
checks at all is the floor, and `parse_batch` (msgspec, then every rule a type
cannot say) is what the service pays. In-process, one core, best of the rounds.
"""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Annotated, Any

import msgspec
from pydantic import BaseModel, ConfigDict, Field

from app.core.request_bodies import MAX_ACTION_LENGTH, MAX_BATCH, MAX_BIGINT, EventBatch
from app.core.times import utcnow
from app.core.validation import InputBounds, parse_batch


class PydanticEvent(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: Annotated[int, Field(ge=1, le=MAX_BIGINT)]
    action: Annotated[str, Field(min_length=1, max_length=MAX_ACTION_LENGTH)]
    metadata: dict[str, Any] = Field(default_factory=dict)
    occurred_at: str | None = None
    id: uuid.UUID | None = None


class PydanticBatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    events: Annotated[list[PydanticEvent], Field(min_length=1, max_length=MAX_BATCH)]


def _best_us_per_event(decode: Callable[[bytes], Any], body: bytes, events: int, rounds: int, seconds: float) -> float:
    """The fastest round's microseconds per event, each round decoding the body for about `seconds`."""
    best = float("inf")
    for _ in range(rounds):
        count, began = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - began) < seconds:
            decode(body)
            count += 1
        best = min(best, elapsed / count / events * 1e6)
    return best


def compare(body: bytes, events: int, *, rounds: int = 5, seconds: float = 0.4) -> dict[str, float]:
    """Microseconds per event of each decoder on `body` (a batch of `events`), checking they agree first."""
    decoded = msgspec.json.decode(body, type=EventBatch)
    assert len(PydanticBatch.model_validate_json(body).events) == len(decoded.events) == events
    now, bounds = utcnow(), InputBounds()
    candidates: dict[str, Callable[[bytes], Any]] = {
        "msgspec": lambda raw: msgspec.json.decode(raw, type=EventBatch),
        "pydantic": PydanticBatch.model_validate_json,
        "json.loads": json.loads,
        "parse_batch": lambda raw: parse_batch(raw, now=now, bounds=bounds),
    }
    return {name: _best_us_per_event(decode, body, events, rounds, seconds) for name, decode in candidates.items()}


def describe(figures: dict[str, float], events: int) -> str:
    return (f"Decoding one {events:,}-event batch body into its declared type, CPU per event (best of 5 rounds, "
            f"one core): msgspec {figures['msgspec']:.2f} us, pydantic v2 {figures['pydantic']:.2f} us "
            f"({figures['pydantic'] / figures['msgspec']:.1f}x msgspec), json.loads with no checks "
            f"{figures['json.loads']:.2f} us; the service's parse_batch (msgspec, then the rules a type cannot say: "
            f"blank action, NUL, nesting, encoded size, clock skew) {figures['parse_batch']:.2f} us.")
