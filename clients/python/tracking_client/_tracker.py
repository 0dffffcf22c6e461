"""The tracker: a bounded queue, one sending thread, batches, and retries that never store an event twice.

`track()` gives each event its id (a UUID) and its time when it is called,
encodes it, and appends it to a bounded queue; it never touches the network.
A daemon thread takes up to `batch_size` events (and at most
`max_batch_bytes` of them) whenever that many are waiting, `flush_interval`
after the oldest arrived, or when `flush()` or `close()` asks, and posts them
to `POST /api/events/batch` over one kept-alive connection.

Delivery is exactly once because the id travels with the event: when an
answer is lost, the retry carries the same ids and the service answers the
events it already stored as duplicates. Network errors, 408 and 5xx are
retried with exponential backoff and jitter, 429 after its `Retry-After`,
until `max_retry_seconds` (unset: for as long as the process runs) or
`close()`'s deadline. Events the service refuses (per item, in the answer's
`details`) go to `on_error` and the rest of their batch is sent again; a
batch over the service's body limit or larger than its whole rate limit (413)
is split in halves; a refusal of the whole batch (a bad token, say) fails it at
once.

At interpreter exit every tracker is closed (flushed with its
`close_timeout`); after `os.fork()` the child starts with an empty queue and
a thread of its own, so the parent's events are sent once, by the parent.
"""
from __future__ import annotations

import atexit
import http.client
import json
import logging
import os
import random
import threading
import time
import uuid
import weakref
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Callable, Deque, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

log = logging.getLogger("tracking_client")

MAX_BATCH_EVENTS = 1000  # the service's limit per batch
MAX_BATCH_BYTES = 1024 * 1024  # the service's default MAX_BODY_BYTES
_ENVELOPE_BYTES = len(b'{"events":[]}')
_BACKOFF_FIRST, _BACKOFF_CAP = 0.1, 10.0  # seconds
_USER_AGENT = "tracking-client/0.1.0"

ErrorCallback = Callable[[dict, str], None]
_Item = Tuple[str, bytes]  # an event's id and its encoded JSON


class DeliveryError(Exception):
    """An event could not be delivered (raised by `track()` in `sync` mode; otherwise given to `on_error`)."""


@dataclass(frozen=True)
class Stats:
    """What a tracker has done so far: events waiting, stored, already stored, dropped, given up, and retries."""

    queued: int
    sent: int
    duplicates: int
    dropped: int
    failed: int
    retries: int


class _Refused(Exception):
    """The service refused the batch as a whole: retrying it cannot help."""


class Tracker:
    """Sends events to the tracking service at `url`; `token` is an ingest or full API token, when access control
    is on. See the module docstring for how and when events leave."""

    def __init__(self, url: str, token: Optional[str] = None, *, sync: bool = False,
                 batch_size: int = MAX_BATCH_EVENTS, max_batch_bytes: int = MAX_BATCH_BYTES,
                 flush_interval: float = 0.5, max_queue_size: int = 100_000,
                 max_retry_seconds: Optional[float] = None, timeout: float = 10.0, close_timeout: float = 10.0,
                 on_error: Optional[ErrorCallback] = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be http(s)://host[:port], not {url!r}")
        if not 1 <= batch_size <= MAX_BATCH_EVENTS:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_EVENTS}")
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, parts.port
        self._path = parts.path.rstrip("/") + "/api/events/batch"
        self._headers = {"Content-Type": "application/json", "User-Agent": _USER_AGENT}
        if token:
            if not token.isascii() or not token.isprintable():
                raise ValueError("token must be printable ASCII")
            self._headers["Authorization"] = f"Bearer {token}"
        self.sync = sync
        self.batch_size = batch_size
        self.max_batch_bytes = max_batch_bytes
        self.flush_interval = flush_interval
        self.max_queue_size = max_queue_size
        self.max_retry_seconds = max_retry_seconds
        self.timeout = timeout
        self.close_timeout = close_timeout
        self.on_error = on_error
        self._start_fresh()
        _LIVE.add(self)

    def _start_fresh(self) -> None:
        """Empty queue, zero counts, no thread yet (a new tracker, or the child of a fork)."""
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: Deque[Tuple[_Item, float]] = deque()
        self._thread: Optional[threading.Thread] = None
        self._connection: Optional[http.client.HTTPConnection] = None
        self._sync_lock = threading.Lock()
        self._accepted = self._settled = 0  # events taken in, and those stored, refused or given up
        self._flush_wanted = False
        self._closing = False
        self._closed = threading.Event()  # set by close(), waking a retry's wait
        self._deadline: Optional[float] = None  # close()'s, on the monotonic clock
        self._sent = self._duplicates = self._dropped = self._failed = self._retries = 0

    # The public API

    def track(self, user_id: int, action: str, metadata: Optional[dict] = None, *,
              occurred_at: Optional[datetime] = None, event_id: Optional[str] = None) -> str:
        """Queue one event (in `sync` mode: deliver it) and return its id; never blocks on the network."""
        if isinstance(user_id, bool) or not isinstance(user_id, int):
            raise TypeError("user_id must be an int")
        if not isinstance(action, str):
            raise TypeError("action must be a str")
        if occurred_at is None:
            occurred_at = datetime.now(timezone.utc)
        elif occurred_at.tzinfo is None:
            raise ValueError("occurred_at must be timezone-aware")
        event_id = event_id or str(uuid.uuid4())
        event = {"id": event_id, "user_id": user_id, "action": action, "metadata": metadata or {},
                 "occurred_at": occurred_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        item = (event_id, json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode())
        if self._closing:
            raise RuntimeError("this tracker is closed")
        if self.sync:
            self._deliver_now(item)
            return event_id
        with self._lock:
            if len(self._queue) >= self.max_queue_size:
                self._dropped += 1
                dropped = self._dropped
            else:
                dropped = 0
                self._queue.append((item, time.monotonic()))
                self._accepted += 1
                if self._thread is None:
                    self._start_thread()
                if len(self._queue) in (1, self.batch_size):  # a batch's timer starts, or the batch is full
                    self._changed.notify_all()
        if dropped:
            if dropped == 1 or dropped % 1000 == 0:
                log.warning("queue full (%d events): dropped %d events so far", self.max_queue_size, dropped)
            self._report([item], f"dropped: the queue holds {self.max_queue_size} events already")
        return event_id

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until every event tracked so far is stored, refused or given up. True when all were stored;
        False when `timeout` passed first, or when any was refused or given up meanwhile (see `on_error`)."""
        end = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            target, failed = self._accepted, self._failed
            self._flush_wanted = True
            self._changed.notify_all()
            while self._settled < target:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._changed.wait(left)
            return self._failed == failed

    def close(self, timeout: Optional[float] = None) -> bool:
        """Flush (retrying until `timeout`, default `close_timeout`, then giving up), then stop the thread.
        True when every event this tracker was given is stored; called at interpreter exit too."""
        timeout = self.close_timeout if timeout is None else timeout
        with self._lock:
            if self._closing and self._thread is None:
                return self._all_stored()
            self._closing = True
            self._deadline = time.monotonic() + timeout
            thread = self._thread
            self._changed.notify_all()
        self._closed.set()
        if thread is not None:
            thread.join(timeout + 1)
        with self._lock:
            self._thread = None
            done = self._all_stored()
        connection = self._connection
        if connection is not None and (thread is None or not thread.is_alive()):
            connection.close()
        return done

    def _all_stored(self) -> bool:
        """Whether every event this tracker was given is stored: none waiting, refused, given up or dropped."""
        return self._settled >= self._accepted and not self._failed and not self._dropped

    @property
    def stats(self) -> Stats:
        with self._lock:
            return Stats(queued=len(self._queue), sent=self._sent, duplicates=self._duplicates,
                         dropped=self._dropped, failed=self._failed, retries=self._retries)

    # The sending thread

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tracking-client", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._deliver(batch)
            except Exception as exc:  # a bug of ours, or an answer nobody foresaw: the thread must go on
                log.exception("sending %d events failed", len(batch))
                self._give_up(batch, f"not delivered: {exc.__class__.__name__}: {exc}", None)
            finally:
                with self._lock:
                    self._settled += len(batch)
                    self._changed.notify_all()

    def _next_batch(self) -> Optional[List[_Item]]:
        """The next batch once one is due; None when closing and nothing is left."""
        with self._lock:
            while True:
                if self._queue:
                    waited = time.monotonic() - self._queue[0][1]
                    due = (len(self._queue) >= self.batch_size or self._flush_wanted or self._closing
                           or waited >= self.flush_interval)
                    if due:
                        break
                    self._changed.wait(self.flush_interval - waited)
                elif self._closing:
                    return None
                else:
                    self._flush_wanted = False
                    self._changed.wait()
            batch, size = [], _ENVELOPE_BYTES
            while self._queue and len(batch) < self.batch_size:
                item = self._queue[0][0]
                if batch and size + len(item[1]) + 1 > self.max_batch_bytes:
                    break
                self._queue.popleft()
                batch.append(item)
                size += len(item[1]) + 1
            return batch

    def _deliver_now(self, item: _Item) -> None:
        """`sync` mode: deliver one event in the caller's thread, retrying within `max_retry_seconds` (30 s unset)."""
        failures: List[str] = []
        with self._sync_lock:  # one connection, so one delivery at a time
            retry_for = 30.0 if self.max_retry_seconds is None else self.max_retry_seconds
            self._deliver([item], give_up_at=time.monotonic() + retry_for, failures=failures)
        if failures:
            raise DeliveryError(failures[0])

    def _deliver(self, items: List[_Item], give_up_at: Optional[float] = None,
                 failures: Optional[List[str]] = None) -> None:
        """Send `items` until each is stored, refused or given up (reasons for the latter go to `failures`)."""
        if give_up_at is None and self.max_retry_seconds is not None:
            give_up_at = time.monotonic() + self.max_retry_seconds
        pending, backoff, reason = list(items), _BACKOFF_FIRST, "closed before a first attempt"
        while pending:
            limit = self._give_up_at(give_up_at)
            if limit is not None and time.monotonic() >= limit:
                self._give_up(pending, f"not delivered in time; last: {reason}", failures)
                return
            try:
                status, headers, body = self._post(pending)
            except (OSError, http.client.HTTPException) as exc:
                status, headers, body, reason = 0, {}, b"", f"network error: {exc.__class__.__name__}: {exc}"
            else:
                reason = f"HTTP {status}: {_message(body)}"
            if status == 200:
                counts = _counts(body)
                if counts is not None:
                    with self._lock:
                        self._sent += counts[0]
                        self._duplicates += counts[1]
                    return
                status, reason = 0, "a 200 answer that is not the service's"  # a proxy's page: try again
            refused = _item_errors(body, len(pending)) if status in (400, 409) else {}
            if refused:
                pending = self._drop_refused(pending, refused, failures)
                continue
            if status == 413 and len(pending) > 1:  # the server's body limit, or its rate limit, is below our batch
                half = len(pending) // 2
                self._deliver(pending[:half], give_up_at, failures)
                pending = pending[half:]
                continue
            if not (status in (0, 408, 429) or status >= 500):  # 401, 403, 404, 415 ...: the same again
                self._give_up(pending, f"refused: {reason}", failures)
                return
            wait = backoff * random.uniform(0.5, 1.0)
            backoff = min(backoff * 2, _BACKOFF_CAP)
            if status in (429, 503):  # never sooner than the backoff, never later than an hour
                wait = min(max(wait, _retry_after(headers) or 0.0), 3600.0)
            with self._lock:
                self._retries += 1
            log.info("retrying %d events in %.2f s after %s", len(pending), wait, reason)
            limit = self._give_up_at(give_up_at)
            wait = wait if limit is None else max(0.0, min(wait, limit - time.monotonic()))
            if self._closing:  # the waits after close() keep their backoff
                time.sleep(wait)
            else:  # close() cuts this one short
                self._closed.wait(wait)

    def _give_up_at(self, give_up_at: Optional[float]) -> Optional[float]:
        """The earlier of the batch's own limit and close()'s deadline."""
        deadline = self._deadline
        if deadline is None:
            return give_up_at
        return deadline if give_up_at is None else min(deadline, give_up_at)

    def _post(self, items: List[_Item]) -> Tuple[int, dict, bytes]:
        body = b'{"events":[' + b",".join(encoded for _, encoded in items) + b"]}"
        connection = self._connection
        if connection is None:
            kind = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            connection = self._connection = kind(self._host, self._port, timeout=self.timeout)
        try:
            connection.request("POST", self._path, body=body, headers=self._headers)
            response = connection.getresponse()
            answer = response.read()
        except BaseException:
            connection.close()  # a half-read answer must not be read as the next one's
            self._connection = None
            raise
        if response.will_close:
            connection.close()
            self._connection = None
        return response.status, {name.lower(): value for name, value in response.getheaders()}, answer

    def _drop_refused(self, items: List[_Item], refused: Dict[int, str],
                      failures: Optional[List[str]]) -> List[_Item]:
        """Report the items the service refused (by index), and keep the others to send again."""
        for index in sorted(refused):
            self._give_up([items[index]], refused[index], failures)
        return [item for index, item in enumerate(items) if index not in refused]

    def _give_up(self, items: List[_Item], reason: str, failures: Optional[List[str]]) -> None:
        with self._lock:
            self._failed += len(items)
        log.error("%d events not delivered: %s", len(items), reason)
        if failures is not None:
            failures.append(reason)
        self._report(items, reason)

    def _report(self, items: List[_Item], reason: str) -> None:
        if self.on_error is None:
            return
        for _, encoded in items:
            try:
                self.on_error(json.loads(encoded), reason)
            except BaseException:  # a callback's bug (even a SystemExit) must not stop the deliveries
                log.exception("on_error raised")


def _message(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace")


def _counts(body: bytes) -> Optional[Tuple[int, int]]:
    """(created, duplicates) of a batch answer; None when the body is not one."""
    try:
        answer = json.loads(body)
        return int(answer["created"]), int(answer["duplicates"])
    except (ValueError, KeyError, TypeError):
        return None


def _item_errors(body: bytes, size: int) -> Dict[int, str]:
    """The per-item refusals of a batch answer (`error.details`) by index, for indexes the batch has."""
    try:
        details = json.loads(body)["error"]["details"]
    except (ValueError, KeyError, TypeError):
        return {}
    refused: Dict[int, str] = {}
    for detail in details if isinstance(details, list) else []:
        index = detail.get("index") if isinstance(detail, dict) else None
        if isinstance(index, int) and 0 <= index < size:
            refused.setdefault(index, f"refused: {detail.get('field')}: {detail.get('message')}")
    return refused


def _retry_after(headers: dict) -> Optional[float]:
    """Retry-After in seconds, given as seconds or as an HTTP date."""
    value = headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


# Every live tracker, for the interpreter's exit and for forks (weak: a tracker dropped is not kept alive).
_LIVE: "weakref.WeakSet[Tracker]" = weakref.WeakSet()


def _close_all() -> None:
    for tracker in list(_LIVE):
        tracker.close()


def _after_fork_in_child() -> None:
    for tracker in list(_LIVE):
        tracker._start_fresh()


atexit.register(_close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
