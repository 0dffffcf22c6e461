"""Load generators: wrk when installed, else a small asyncio HTTP/1.1 client.

Both keep `connections` keep-alive connections busy for `seconds` in a closed
loop, cycling through a fixed list of requests, and report completed requests,
errors (socket errors and non-2xx answers) and latency percentiles.
"""
from __future__ import annotations

import asyncio
import math
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes = b""


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


class LoadGenerator(Protocol):
    name: str

    def describe(self, connections: int) -> str: ...

    def run(self, base_url: str, requests: Sequence[Request], *, connections: int,
            seconds: float) -> LoadResult: ...


def choose(preference: str) -> LoadGenerator:
    """wrk if asked for or found on PATH, the asyncio client otherwise (or when asked for)."""
    if preference == "asyncio":
        return AsyncioLoad()
    wrk = shutil.which("wrk")
    if wrk:
        return WrkLoad(wrk)
    if preference == "wrk":
        raise SystemExit("bench: wrk was asked for but is not on PATH (apt-get install wrk)")
    return AsyncioLoad()


def _lua_string(text: str) -> str:
    """`text` as a Lua long-bracket literal whose closing bracket does not occur in it."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


_WRK_SCRIPT = """
local specs = {%(specs)s}
local prepared = {}
local next_index = 0

function init(args)
  for i, spec in ipairs(specs) do
    local headers = {}
    if spec[3] ~= "" then headers["Content-Type"] = "application/json" end
    prepared[i] = wrk.format(spec[1], spec[2], headers, spec[3] ~= "" and spec[3] or nil)
  end
  next_index = math.random(#prepared) - 1
end

function request()
  next_index = next_index %% #prepared + 1
  return prepared[next_index]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK_RESULT %%d %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status, latency:percentile(50), latency:percentile(99)))
end
"""

_WRK_RESULT = re.compile(r"^WRK_RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)$", re.M)


class WrkLoad:
    """wrk 4 with one thread (two cores are shared with the servers) and a Lua script of requests."""

    name = "wrk"

    def __init__(self, executable: str) -> None:
        self.executable = executable

    def describe(self, connections: int) -> str:
        version = subprocess.run([self.executable, "-v"], capture_output=True, text=True).stdout.splitlines()
        name = version[0].split(" Copyright")[0] if version else "wrk"
        return f"{name}: 1 thread, {connections} keep-alive connections, closed loop"

    def run(self, base_url: str, requests: Sequence[Request], *, connections: int,
            seconds: float) -> LoadResult:
        specs = ", ".join(f"{{{_lua_string(r.method)}, {_lua_string(r.path)}, {_lua_string(r.body.decode())}}}"
                          for r in requests)
        with tempfile.TemporaryDirectory(prefix="bench-wrk-") as scratch:
            script = Path(scratch) / "requests.lua"
            script.write_text(_WRK_SCRIPT % {"specs": specs})
            duration = max(1, math.ceil(seconds))
            completed = subprocess.run(
                [self.executable, "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s",
                 "-s", str(script), base_url],
                capture_output=True, text=True, timeout=duration + 60)
        result = _WRK_RESULT.search(completed.stdout)
        if completed.returncode != 0 or not result:
            raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stdout}{completed.stderr}")
        count, micros, socket_errors, status_errors, p50, p99 = (int(value) for value in result.groups())
        return LoadResult(requests=count, seconds=micros / 1e6, errors=socket_errors + status_errors,
                          p50_ms=p50 / 1000, p99_ms=p99 / 1000)


class AsyncioLoad:
    """The fallback when wrk cannot be installed: asyncio streams, one coroutine per connection.

    It runs in the benchmark's own Python process, so on two cores it takes a
    larger share of the CPU than wrk and the absolute rates come out lower.
    """

    name = "asyncio"

    def describe(self, connections: int) -> str:
        return (f"asyncio HTTP/1.1 client (fallback, wrk unavailable): {connections} keep-alive connections, "
                "closed loop, in the benchmark process")

    def run(self, base_url: str, requests: Sequence[Request], *, connections: int,
            seconds: float) -> LoadResult:
        return asyncio.run(self._run(base_url, requests, connections, seconds))

    async def _run(self, base_url: str, requests: Sequence[Request], connections: int,
                   seconds: float) -> LoadResult:
        url = urlsplit(base_url)
        host, port = url.hostname or "127.0.0.1", url.port or 80
        payloads = [_http_request(r, f"{host}:{port}") for r in requests]
        latencies: list[float] = []
        errors = [0]
        began = time.perf_counter()
        deadline = began + seconds
        await asyncio.gather(*(self._connection(host, port, payloads, index, deadline, latencies, errors)
                               for index in range(connections)))
        elapsed = time.perf_counter() - began
        return LoadResult(requests=len(latencies), seconds=elapsed, errors=errors[0],
                          p50_ms=_percentile(latencies, 50) * 1000, p99_ms=_percentile(latencies, 99) * 1000)

    async def _connection(self, host: str, port: int, payloads: list[bytes], offset: int, deadline: float,
                          latencies: list[float], errors: list[int]) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        sent = offset
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                writer.write(payloads[sent % len(payloads)])
                sent += 1
                try:
                    status, keep_alive = await asyncio.wait_for(_read_response(reader), timeout=10)
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
                    errors[0] += 1
                    status, keep_alive = 0, False
                else:
                    latencies.append(time.perf_counter() - started)
                    if not 200 <= status < 300:
                        errors[0] += 1
                if not keep_alive:
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        finally:
            writer.close()


def _http_request(request: Request, host: str) -> bytes:
    head = f"{request.method} {request.path} HTTP/1.1\r\nHost: {host}\r\n"
    if request.body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(request.body)}\r\n"
    return (head + "\r\n").encode() + request.body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; return its status and whether the connection stays open."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *header_lines = head.split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    await reader.readexactly(int(headers.get("content-length", "0")))
    version, status = status_line.split()[:2]
    if version == "HTTP/1.1":
        return int(status), headers.get("connection") != "close"
    return int(status), headers.get("connection") == "keep-alive"


def _percentile(values: list[float], percent: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(percent / 100 * len(ordered)) - 1)]
