"""Group commit of single events: requests that arrive together share one statement and one commit,
each keeps its own answer, and a 201 is only ever sent for an event that is committed.

The in-process tests hold a lock on `events` so the first request's insert waits, and let the others
queue up behind it: what then goes into one group does not depend on timing.
"""
from __future__ import annotations

import ctypes
import http.client
import json
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa

from app.extensions import db, runtime
from tests.helpers import answers_healthz, free_port, start_web, wait_until
from tests.test_telemetry import scrape, value

ROOT = Path(__file__).resolve().parent.parent
UTC = timezone.utc


def post_in_thread(app, body: dict, answers: dict[str, tuple[int, dict]], name: str) -> threading.Thread:
    def send() -> None:
        response = app.test_client().post("/api/event", json=body)
        answers[name] = (response.status_code, response.get_json())

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def inserts_waiting_for_a_lock(app) -> int:
    with app.app_context():
        return db.session.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            " AND query LIKE '%INSERT INTO events%'")).scalar_one()


@contextmanager
def events_locked(app) -> Iterator[None]:
    """Inserts into `events` wait until the block ends (SHARE conflicts with the inserts' ROW EXCLUSIVE)."""
    with app.app_context():
        connection = db.engine.connect()
    try:
        connection.execute(sa.text("LOCK TABLE events IN SHARE MODE"))
        yield
    finally:
        connection.rollback()
        connection.close()


def queue_behind_a_blocked_insert(app, bodies: dict[str, dict]) -> dict[str, tuple[int, dict]]:
    """Send a first event whose insert blocks, queue `bodies` behind it, then let everything through."""
    answers: dict[str, tuple[int, dict]] = {}
    threads = []
    with events_locked(app):
        threads.append(post_in_thread(app, {"user_id": 999, "action": "first"}, answers, "first"))
        wait_until(lambda: inserts_waiting_for_a_lock(app) == 1, what="the first insert waits for the lock")
        for name, body in bodies.items():
            threads.append(post_in_thread(app, body, answers, name))
        with app.app_context():
            writer = runtime().group_commit
        wait_until(lambda: writer.queued == len(bodies), what="the other events queue up")
    for thread in threads:
        thread.join(timeout=30)
    return answers


def stored(app) -> list[sa.Row]:
    with app.app_context():
        return db.session.execute(sa.text(
            "SELECT id, user_id, action, received_at FROM events ORDER BY user_id")).all()


def test_events_that_arrive_together_are_committed_together_and_each_gets_its_own_answer(app):
    bodies = {f"user{n}": {"user_id": n, "action": "page_view", "metadata": {"n": n}} for n in range(1, 6)}
    answers = queue_behind_a_blocked_insert(app, bodies)
    assert {name: status for name, (status, _) in answers.items()} == {"first": 201, **{n: 201 for n in bodies}}
    for n in range(1, 6):
        assert answers[f"user{n}"][1]["user_id"] == n and answers[f"user{n}"][1]["metadata"] == {"n": n}
    rows = stored(app)
    assert sorted(str(row.id) for row in rows) == sorted(answer["id"] for _, answer in answers.values())
    # the five queued events went in as one group: one statement, one commit, one time of receipt
    assert len({row.received_at for row in rows if row.user_id != 999}) == 1
    assert len({row.received_at for row in rows}) == 2


def test_prometheus_shows_how_many_events_each_single_event_was_committed_with(app):
    """tracking_events_group_size: the first event alone, then five in one group (each of them observes 5)."""
    client = app.test_client()
    before = scrape(client)
    queue_behind_a_blocked_insert(app, {f"user{n}": {"user_id": n, "action": "a"} for n in range(1, 6)})
    after = scrape(client)
    deltas = [value(after, *key) - value(before, *key) for key in (
        ("tracking_events_group_size_count", {}), ("tracking_events_group_size_sum", {}),
        ("tracking_events_group_size_bucket", {"le": "1.0"}), ("tracking_events_group_size_bucket", {"le": "4.0"}),
        ("tracking_events_group_size_bucket", {"le": "8.0"}))]
    assert deltas == [6, 1 + 5 * 5, 1, 1, 6]


def test_an_id_conflict_in_a_group_is_that_request_s_409_and_its_neighbours_are_stored(app):
    taken = str(uuid.uuid4())
    assert app.test_client().post("/api/event", json={"id": taken, "user_id": 7, "action": "a"}).status_code == 201
    answers = queue_behind_a_blocked_insert(app, {
        "before": {"user_id": 1, "action": "page_view"},
        "conflict": {"id": taken, "user_id": 7, "action": "other"},
        "retry": {"id": taken, "user_id": 7, "action": "a"},
        "after": {"user_id": 2, "action": "page_view"},
    })
    statuses = {name: status for name, (status, _) in answers.items()}
    assert statuses == {"first": 201, "before": 201, "conflict": 409, "retry": 200, "after": 201}
    assert answers["conflict"][1]["error"]["field"] == "id"
    assert answers["retry"][1]["id"] == taken
    assert [(row.user_id, row.action) for row in stored(app)] == [(1, "page_view"), (2, "page_view"), (7, "a"),
                                                                   (999, "first")]


def test_the_same_client_id_twice_in_one_group_is_stored_once_and_the_retry_answers_with_it(app):
    key = str(uuid.uuid4())
    sent_at = datetime.now(UTC).replace(microsecond=0)  # in the current window: not a late event
    body = {"id": key, "user_id": 3, "action": "signup", "occurred_at": sent_at.isoformat()}
    retry = {"id": key, "user_id": 3, "action": "signup"}  # a retry may leave the time out
    answers = queue_behind_a_blocked_insert(app, {"one": body, "two": retry})
    assert sorted(status for name, (status, _) in answers.items() if name != "first") == [200, 201]
    assert answers["one"][1]["occurred_at"] == answers["two"][1]["occurred_at"]  # both name the stored event
    assert [row.id for row in stored(app) if row.user_id == 3] == [uuid.UUID(key)]


def test_a_late_event_waiting_for_its_window_holds_up_no_other_event(app):
    """A late event marks its closed window for recounting; while a calculation holds that window's ledger
    row, it waits. Events behind it must not: late events are stored on their own."""
    late = (datetime.now(UTC) - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
    answers: dict[str, tuple[int, dict]] = {}
    assert app.test_client().post("/api/event", json={"user_id": 4, "action": "view",
                                                       "occurred_at": late.isoformat()}).status_code == 201
    with app.app_context():
        holder = db.engine.connect()
    try:
        holder.execute(sa.text("SELECT 1 FROM metrics_windows WHERE window_start <= :t FOR UPDATE"), {"t": late})
        # the window was marked stale above; mark it computed again so the next late event must update it
        holder.execute(sa.text("UPDATE metrics_windows SET stale = false"))
        waiting = post_in_thread(app, {"user_id": 4, "action": "view", "occurred_at": late.isoformat()},
                                 answers, "late")
        wait_until(lambda: inserts_waiting_for_a_lock(app) == 1 or "late" in answers, what="the late event waits")
        assert "late" not in answers
        behind = post_in_thread(app, {"user_id": 5, "action": "view"}, answers, "on time")
        wait_until(lambda: "on time" in answers, timeout=10, what="the on-time event is answered")
        assert answers["on time"][0] == 201
        assert "late" not in answers
    finally:
        holder.commit()
        holder.close()
    waiting.join(timeout=30)
    behind.join(timeout=30)
    assert answers["late"][0] == 201
    with app.app_context():
        stale = db.session.execute(sa.text("SELECT count(*) FROM metrics_windows WHERE stale")).scalar_one()
    assert stale == 1


@pytest.fixture
def web(app_config, tmp_path) -> Iterator[tuple[int, subprocess.Popen]]:
    """The web server with two workers of eight threads; yields its port and the master process."""
    port = free_port()
    settings = {**app_config, "PORT": port, "WEB_WORKERS": 2, "WEB_THREADS": 8,
                "RATE_LIMIT_INGEST": ""}
    process = start_web(settings, tmp_path / "web.log")
    try:
        wait_until(lambda: len(psutil.Process(process.pid).children()) == 2 and answers_healthz(port), timeout=30,
                   interval=0.1, what="the web server and its two workers")
        yield port, process
    finally:
        process.terminate()
        process.wait(timeout=30)


def raise_in(thread: threading.Thread, exception: type[BaseException]) -> None:
    """Raise `exception` in `thread` at its next Python instruction, as a worker's abort (a
    SystemExit, SIGINT's KeyboardInterrupt) raises it in the thread it lands on."""
    assert ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(exception)) == 1


def test_a_writer_aborted_mid_insert_strands_none_of_the_events_queued_behind_it(app):
    """The writer's thread is aborted while its insert waits (as a stopping worker is aborted): its own request
    ends, and the events queued behind it are still stored by the next writer and answered 201, once each."""
    answers: dict[str, tuple[int, dict]] = {}
    with app.app_context():
        writer = runtime().group_commit

    def send_first() -> None:
        try:
            app.test_client().post("/api/event", json={"user_id": 999, "action": "first"})
        except SystemExit:
            answers["first aborted"] = (0, {})

    with events_locked(app):
        first = threading.Thread(target=send_first)
        first.start()
        wait_until(lambda: inserts_waiting_for_a_lock(app) == 1, what="the first insert waits for the lock")
        queued = [post_in_thread(app, {"user_id": n, "action": "queued"}, answers, f"user{n}") for n in (1, 2)]
        wait_until(lambda: writer.queued == 2, what="two events queue behind it")
        raise_in(first, SystemExit)  # raised when its insert returns, before it can answer
    for thread in (first, *queued):
        thread.join(timeout=30)
    assert set(answers) == {"first aborted", "user1", "user2"}, answers
    assert [answers[f"user{n}"][0] for n in (1, 2)] == [201, 201]
    assert sorted(row.user_id for row in stored(app)) == [1, 2, 999]
    assert writer.queued == 0
    assert app.test_client().post("/api/event", json={"user_id": 3, "action": "later"}).status_code == 201


@pytest.mark.processes
def test_every_event_answered_201_survives_a_web_worker_killed_under_load(app, web):
    """SIGKILL runs no clean-up: whatever a killed worker had answered 201 must already be committed."""
    port, master = web
    answered: list[str] = []
    stop = threading.Event()

    def send(client: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                connection.request("POST", "/api/event", json.dumps({"user_id": client, "action": "load",
                                                                     "metadata": {"n": n}}),
                                   {"Content-Type": "application/json"})
                response = connection.getresponse()
                if response.status == 201:
                    answered.append(json.loads(response.read())["id"])
            except (OSError, http.client.HTTPException):
                pass  # the killed worker's connections break; those events were never answered 201
            finally:
                connection.close()

    senders = [threading.Thread(target=send, args=(client,)) for client in range(1, 17)]
    for sender in senders:
        sender.start()
    try:
        wait_until(lambda: len(answered) >= 200, timeout=60, what="traffic flowing")
        victim = psutil.Process(master.pid).children()[0]
        victim.send_signal(signal.SIGKILL)
        before = len(answered)
        wait_until(lambda: len(answered) >= before + 200, timeout=60, what="traffic after the kill")
    finally:
        stop.set()
        for sender in senders:
            sender.join(timeout=30)
    with app.app_context():
        kept = set(map(str, db.session.execute(sa.text("SELECT id FROM events")).scalars()))
    lost = [event_id for event_id in answered if event_id not in kept]
    assert not lost, f"{len(lost)} of {len(answered)} events answered 201 are not in the table"
