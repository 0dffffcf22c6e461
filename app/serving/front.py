"""The front of each web worker: a request reaches a Python thread only once it has arrived whole.

granian runs this RSGI application on its worker's event loop. The loop
reads each request's body (under a deadline, and never more than
MAX_BODY_BYTES and one byte), then hands the complete request to one of
WEB_THREADS threads that run the WSGI app. A client that trickles its
headers is timed out by granian itself; one that trickles its body waits
on the loop, where it costs a socket and a buffer, never a thread.

The hand-off is one queue put; no executor, no task of ours per request.
The thread sends the answer itself: in one piece when the app returned one
chunk (every JSON answer), else streamed through a FIFO that granian reads
like a file (the CSV exports), so the thread produces no faster than the
client reads and a slow reader holds the thread that serves it and a pipe's
buffer, nothing more. Then it wakes the request's coroutine, which granian
waits for before it counts the request done; one wake-up of the loop carries
every answer settled since the last.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import itertools
import json
import os
import queue
import select
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
_STOP = None  # what a thread takes from the queue to end


def envelope(code: str, message: str) -> bytes:
    """The API's error envelope, for the few answers the front gives itself."""
    return json.dumps({"error": {"code": code, "message": message, "field": None}}).encode()


class Front:
    """RSGI application wrapping a WSGI one; one per worker process."""

    def __init__(self, wsgi_app: WSGIApp, *, threads: int, body_timeout: float, max_body_bytes: int,
                 on_start: Callable[[asyncio.AbstractEventLoop], None] | None = None) -> None:
        self.wsgi_app = wsgi_app
        self.threads = threads
        self.body_timeout = body_timeout
        self.max_body_bytes = max_body_bytes
        self.on_start = on_start
        self._jobs: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._loop: Any = None  # the worker's loop, once granian starts it
        self._fifos = ""  # the worker's directory of FIFOs for streamed answers, once granian starts it
        self._fifo_ids = itertools.count()
        self._settled: list[tuple[asyncio.Future[None], BaseException | None]] = []
        self._settled_lock = threading.Lock()

    # granian's hooks: the loop starts and stops once per worker process.

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._fifos = tempfile.mkdtemp(prefix="tracking-web-streams-")
        self._workers = [threading.Thread(target=self._work, name=f"web-{n}", daemon=True)
                         for n in range(self.threads)]
        for worker in self._workers:
            worker.start()
        if self.on_start is not None:
            self.on_start(loop)

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        """After granian has answered every request in flight: let the threads end."""
        for _ in self._workers:
            self._jobs.put(_STOP)
        deadline = time.monotonic() + 5
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
        shutil.rmtree(self._fifos, ignore_errors=True)

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        headers = scope.headers
        chunked = "transfer-encoding" in headers  # then the body is read as chunked, whatever else is declared
        declared = None if chunked else headers.get("content-length")
        environ: dict[str, Any] = {}
        if scope.method in _BODYLESS and declared is None and not chunked:
            body = b""
        elif declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            body = b""  # the app answers 413 from the declared length, without a byte read
            environ["CONTENT_LENGTH"] = declared
        else:
            # A timer, not wait_for: no task per request for the common body that is already here.
            task = asyncio.current_task()
            assert task is not None
            expired: list[bool] = []
            deadline = self._loop.call_later(self.body_timeout, _expire, task, expired)
            try:
                body = await (protocol() if declared is not None else self._read(protocol))
            except asyncio.CancelledError:
                if not expired:  # cancelled by granian, not by our timer
                    raise
                task.uncancel()
                _answer(protocol, 408, "body_timeout",
                        f"the request body did not arrive within {self.body_timeout:g} seconds")
                return
            except Exception:  # the client went away mid-body: nobody to answer
                return
            finally:
                deadline.cancel()
            if declared is None:
                environ["wsgi.input_terminated"] = True  # chunked: the app checks it against the limit
            else:
                environ["CONTENT_LENGTH"] = str(len(body))
        _fill_environ(environ, scope, headers, body)
        answer = self._loop.create_future()
        self._jobs.put((environ, answer, protocol))
        await answer  # granian counts the request done, and the connection free, when this returns

    async def _read(self, protocol: Any) -> bytes:
        """A chunked body, stopping past the limit (the app then answers 413)."""
        parts: list[bytes] = []
        size = 0
        async for chunk in protocol:
            parts.append(chunk)
            size += len(chunk)
            if size > self.max_body_bytes:
                break
        return b"".join(parts)

    def _stream(self, protocol: Any, status: int, headers: list[tuple[str, str]], chunks: Iterator[bytes]) -> None:
        """Send a long answer through a FIFO that granian reads like a file, as fast as the client reads.

        granian's own stream transport queues without limit, so a client that reads slowly would have the
        whole answer (an export) pile up in this process. A FIFO holds a pipe's buffer at most: when it is
        full this thread waits, and a client that takes nothing for `body_timeout` seconds is cut off. One
        that leaves closes granian's end, and the next write tells this thread to stop producing.
        """
        path = os.path.join(self._fifos, f"{threading.get_ident()}-{next(self._fifo_ids)}")
        os.mkfifo(path, 0o600)
        try:
            protocol.response_file(status, headers, path)
            fd = _open_writer(path, self.body_timeout)
        finally:
            os.unlink(path)
        if fd is None:
            return  # granian never opened it: the client left before the answer started
        try:
            for chunk in chunks:
                if chunk and not _write_all(fd, chunk, self.body_timeout):
                    return  # the client left, or stopped reading
        finally:
            os.close(fd)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not _STOP:
            environ, answer, protocol = job
            try:
                self._serve(environ, protocol)
            except BaseException as error:  # the loop's future carries it; granian logs it and answers 500
                self._settle(answer, error)
            else:
                self._settle(answer, None)

    def _settle(self, answer: asyncio.Future[None], error: BaseException | None) -> None:
        """Wake the request's coroutine; one wake-up of the loop carries every answer settled meanwhile."""
        with self._settled_lock:
            self._settled.append((answer, error))
            if len(self._settled) > 1:
                return  # a wake-up is on its way
        with contextlib.suppress(RuntimeError):  # the loop has closed: the worker is gone
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        with self._settled_lock:
            settled, self._settled = self._settled, []
        for answer, error in settled:
            if answer.cancelled():
                continue
            if error is None:
                answer.set_result(None)
            else:
                answer.set_exception(error)

    def _serve(self, environ: dict[str, Any], protocol: Any) -> None:
        """Run the app and send its answer from this thread: whole when it is one chunk, else streamed."""
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., Any]:
            started[:] = [int(status[:3]), headers]
            return _no_write

        result = self.wsgi_app(environ, start_response)
        try:
            chunks = iter(result)
            first = next(chunks, b"")
            second = next(chunks, None)
            status, headers = started
            if second is None:
                protocol.response_bytes(status, headers, first)
                return
            self._stream(protocol, status, headers, _chain(first, second, chunks))
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()


def _expire(task: asyncio.Task[None], expired: list[bool]) -> None:
    expired.append(True)
    task.cancel()


def _answer(protocol: Any, status: int, code: str, message: str) -> None:
    protocol.response_bytes(status, [("content-type", "application/json")], envelope(code, message))


def _chain(first: bytes, second: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield second
    yield from rest


def _no_write(data: bytes) -> None:
    raise NotImplementedError("the front supports WSGI response iterables, not write()")


def _open_writer(path: str, timeout: float) -> int | None:
    """Open the FIFO's writing end once granian has opened its reading end; None if it has not within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as error:
            if error.errno != errno.ENXIO or time.monotonic() > deadline:  # ENXIO: no reader yet
                return None
        time.sleep(0.002)


def _write_all(fd: int, data: bytes, timeout: float) -> bool:
    """Write all of `data`; False when the reader has gone or took nothing for `timeout` seconds."""
    view = memoryview(data)
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    while view:
        if not poller.poll(timeout * 1000):
            return False
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            continue
        except BrokenPipeError:
            return False
    return True


def _fill_environ(environ: dict[str, Any], scope: Any, headers: Any, body: bytes) -> None:
    """The WSGI environ of a request."""
    server_host, _, server_port = scope.server.rpartition(":")
    environ.update({
        "REQUEST_METHOD": scope.method, "SCRIPT_NAME": "",
        # WSGI's PATH_INFO is the path's bytes as latin-1; granian has decoded them as UTF-8
        "PATH_INFO": scope.path.encode().decode("latin-1"),
        "QUERY_STRING": scope.query_string, "SERVER_NAME": server_host.strip("[]"), "SERVER_PORT": server_port,
        "SERVER_PROTOCOL": "HTTP/1.0" if scope.http_version == "1" else f"HTTP/{scope.http_version}",
        "REMOTE_ADDR": scope.client.rpartition(":")[0].strip("[]"),
        "wsgi.version": (1, 0), "wsgi.url_scheme": scope.scheme, "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
    })
    for key, value in headers.items():
        if key == "content-type":
            environ["CONTENT_TYPE"] = value
        elif "_" in key:
            continue  # X_Forwarded_For must not pass for X-Forwarded-For, as gunicorn and nginx also ensure
        elif key != "content-length":
            name = "HTTP_" + key.upper().replace("-", "_")
            joiner = "; " if name == "HTTP_COOKIE" else ","
            environ[name] = f"{environ[name]}{joiner}{value}" if name in environ else value
