"""The Python client from one process (`tracking_client.Tracker`) beside raw batch posts of the same events.

Raw: the events encoded beforehand, as the client would encode them, posted as 1,000-event batches one
after another over one kept-alive connection: the fastest one process can hand the service its events.
Client: the same number of events given to `track()` one by one, then `flush()`; its background thread
batches and posts them over its own connection while `track()` goes on.
"""
from __future__ import annotations

import http.client
import json
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import urlsplit

from tracking_client import Tracker

BATCH = 1000


def _event(n: int) -> dict:
    return {"id": str(uuid.uuid4()), "user_id": 2 + n % 10_000, "action": "page_view",
            "metadata": {"page": "/p/1", "ref": "direct"},
            "occurred_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}


def raw_rate(base_url: str, events: int) -> float:
    """Events/s of pre-encoded batches posted back to back; fails on any answer but 200."""
    bodies = [json.dumps({"events": [_event(n) for n in range(start, min(start + BATCH, events))]},
                         separators=(",", ":")).encode() for start in range(0, events, BATCH)]
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    began = time.perf_counter()
    for body in bodies:
        connection.request("POST", "/api/events/batch", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"raw batch post answered {response.status}: {answer[:200]!r}")
    elapsed = time.perf_counter() - began
    connection.close()
    return events / elapsed


def client_rate(base_url: str, events: int) -> float:
    """Events/s from the first `track()` until `flush()` returns with every event acknowledged."""
    tracker = Tracker(base_url, max_queue_size=events)
    began = time.perf_counter()
    for n in range(events):
        tracker.track(user_id=2 + n % 10_000, action="page_view", metadata={"page": "/p/1", "ref": "direct"})
    if not tracker.flush(timeout=300):
        raise RuntimeError(f"the client did not deliver {events} events in 300 s: {tracker.stats}")
    elapsed = time.perf_counter() - began
    stats = tracker.stats
    tracker.close()
    if stats.sent != events or stats.failed or stats.dropped:
        raise RuntimeError(f"the client delivered {stats}, not {events} new events")
    return events / elapsed
