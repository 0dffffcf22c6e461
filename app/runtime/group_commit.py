"""Group commit: single events that arrive together share one statement and one commit.

A `POST /api/event` hands its validated event to its process's `GroupCommit`
and waits, rather than paying for an insert and a commit (a WAL flush) of its
own; one of the waiting requests (the first that finds
no group being written) takes up to `max_rows` queued events, stores them
with one call to `record_events` and wakes the others with their own
result. Nobody waits for a timer: while one group commits, the next one
gathers, so under load a request waits at most for the group ahead of it,
and when idle it goes straight through.

A request is answered only after the commit that holds its event, so a 201
still means "durable in PostgreSQL". A group that fails as a whole because
of one of its rows (a client id reused with other content, a value the
database refuses) is stored again row by row, so one row's error is never
its neighbours'; a database that is down fails the whole group at once.
Late events (for a window already closed) are stored on their own: marking their window for recounting may wait for a calculation
that holds it, and that wait must not hold up the events behind them.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from ..core.database import Database, Writer
from ..core.errors import ConflictError, UnavailableError
from ..core.validation import ValidEvent
from ..core.windows import floor_window
from ..services.events import Recorded, record_events

# Errors one row can cause: the group is then stored again row by row. Any other error (the database
# down, the pool exhausted) would be the same for each row, so the whole group gets it at once.
_ROW_ERRORS = (ConflictError, psycopg.DataError, psycopg.IntegrityError)


@dataclass
class _Waiting:
    """One request's event, and what became of it."""

    new: ValidEvent
    now: datetime
    recorded: Recorded | None = None
    error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.recorded is not None or self.error is not None


class GroupCommit:
    """The event writer of one process; thread-safe, made by the runtime once per app and process."""

    def __init__(self, database: Database, writer: Writer, *, window_size: timedelta, max_rows: int) -> None:
        self.database = database  # for late events, stored on their own
        # the groups are written one at a time: a connection of their own spares each a pool checkout
        self.writer = writer
        self.window_size = window_size
        self.max_rows = max_rows
        self._queue: deque[_Waiting] = deque()
        self._changed = threading.Condition()
        self._writing = False

    @property
    def queued(self) -> int:
        """Events waiting for a group to take them (not those being written)."""
        with self._changed:
            return len(self._queue)

    def record(self, new: ValidEvent, *, now: datetime) -> Recorded:
        """Store one event with whatever others are waiting; return once it is committed (or raise its error)."""
        if new.occurred_at is not None and new.occurred_at < floor_window(now, self.window_size):
            return record_events(self.database, [new], now=now, window_size=self.window_size)
        mine = _Waiting(new, now)
        with self._changed:
            self._queue.append(mine)
        while not mine.done:
            with self._changed:
                while self._writing and not mine.done:
                    self._changed.wait()
                if mine.done:
                    break
                self._writing = True
                group = [self._queue.popleft() for _ in range(min(self.max_rows, len(self._queue)))]
            try:
                self._store(group)
            except BaseException:  # interrupted (the worker stopping): no row of it may wait on, or go in later
                stopped = UnavailableError("the service stopped while storing the event; retry it")
                with self._changed:
                    if mine in self._queue:
                        self._queue.remove(mine)
                for waiting in group:
                    if not waiting.done:
                        waiting.error = stopped
                raise
            finally:
                with self._changed:
                    self._writing = False
                    self._changed.notify_all()
        if mine.error is not None:
            raise mine.error
        assert mine.recorded is not None
        return mine.recorded

    def _store(self, group: list[_Waiting]) -> None:
        """Store the group in one call; on an error caused by its rows, each row on its own."""
        # The group is received when it is stored: the latest of its requests' clocks.
        now = max(waiting.now for waiting in group)
        try:
            recorded = record_events(self.writer, [waiting.new for waiting in group], now=now,
                                     window_size=self.window_size)
        except Exception as error:  # handed to the requests that wait for these rows
            if len(group) == 1 or not isinstance(error, _ROW_ERRORS):
                for waiting in group:
                    waiting.error = error
                return
            for waiting in group:
                self._store_alone(waiting)
            return
        current_window = floor_window(now, self.window_size)
        for waiting, (event, created) in zip(group, recorded.results):
            late = created and event.occurred_at < current_window
            waiting.recorded = Recorded([(event, created)], late=int(late), group=len(group))

    def _store_alone(self, waiting: _Waiting) -> None:
        try:
            waiting.recorded = record_events(self.writer, [waiting.new], now=waiting.now,
                                             window_size=self.window_size)
        except Exception as error:  # this row's own error, for its own request
            waiting.error = error
