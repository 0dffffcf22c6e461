"""The front of each web worker: a request reaches a Python thread only once it has arrived whole.

granian runs this RSGI application on its worker's event loop. The loop
reads each request's body (under a deadline, and never more than
MAX_BODY_BYTES and one byte), then hands the complete request to one of
WEB_THREADS threads that run the WSGI app. A client that trickles its
headers is timed out by granian itself; one that trickles its body waits
on the loop, where it costs a socket and a buffer, never a thread.

The hand-off is one queue put; no executor, no task of ours per request.
The thread sends the answer itself: in one piece when the app returned one
chunk (every JSON answer), else streamed (the CSV exports), the thread
waiting for each chunk to be sent, so a slow reader holds the thread that
serves it and nothing else. Then it wakes the request's coroutine, which
granian waits for before it counts the request done; one wake-up of the
loop carries every answer settled since the last.
"""
from __future__ import annotations

import asyncio
import io
import json
import queue
import sys
import threading
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
        self._settled: list[tuple[asyncio.Future[None], BaseException | None]] = []
        self._settled_lock = threading.Lock()

    # granian's hooks: the loop starts and stops once per worker process.

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
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
        for worker in self._workers:
            worker.join(timeout=5)

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        headers = scope.headers
        declared = headers.get("content-length")
        environ: dict[str, Any] = {}
        if scope.method in _BODYLESS and declared is None and "transfer-encoding" not in headers:
            body = b""
        elif declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            body = b""  # the app answers 413 from the declared length, without a byte read
            environ["CONTENT_LENGTH"] = declared
        else:
            # A timer, not wait_for: no task per request for the common body that is already here.
            task = asyncio.current_task()
            assert task is not None
            deadline = asyncio.get_running_loop().call_later(self.body_timeout, task.cancel)
            try:
                body = await (protocol() if declared is not None else self._read(protocol))
            except asyncio.CancelledError:
                if deadline.cancelled():  # granian is stopping, not our timer
                    raise
                protocol.response_bytes(408, [("content-type", "application/json")],
                                        envelope("body_timeout", f"the request body did not arrive within "
                                                                 f"{self.body_timeout:g} seconds"))
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
            transport = protocol.response_stream(status, headers)
            for chunk in _chain(first, second, chunks):
                if not chunk:
                    continue
                try:  # each waits until sent: a slow reader holds this thread, not the process's memory
                    asyncio.run_coroutine_threadsafe(_send(transport, chunk), self._loop).result()
                except RuntimeError:  # granian's RSGIProtocolClosed: the client went away; stop producing
                    return
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()


async def _send(transport: Any, chunk: bytes) -> None:
    await transport.send_bytes(chunk)


def _chain(first: bytes, second: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield second
    yield from rest


def _no_write(data: bytes) -> None:
    raise NotImplementedError("the front supports WSGI response iterables, not write()")


def _fill_environ(environ: dict[str, Any], scope: Any, headers: Any, body: bytes) -> None:
    server_host, _, server_port = scope.server.rpartition(":")
    environ.update({
        "REQUEST_METHOD": scope.method, "SCRIPT_NAME": "", "PATH_INFO": scope.path,
        "QUERY_STRING": scope.query_string, "SERVER_NAME": server_host, "SERVER_PORT": server_port,
        "SERVER_PROTOCOL": f"HTTP/{scope.http_version}",
        "REMOTE_ADDR": scope.client.rpartition(":")[0].strip("[]"),
        "wsgi.version": (1, 0), "wsgi.url_scheme": scope.scheme, "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
    })
    for key, value in headers.items():
        if key == "content-type":
            environ["CONTENT_TYPE"] = value
        elif key != "content-length":
            name = "HTTP_" + key.upper().replace("-", "_")
            environ[name] = f"{environ[name]},{value}" if name in environ else value
