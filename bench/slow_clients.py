"""The slow-client run: sockets that trickle their headers or their bodies, while /healthz is probed.

A server that gives each request a thread as soon as its first bytes arrive
runs out of threads: /healthz then waits for one, or times out. One that
reads requests whole before a thread sees them answers it at once.
"""
from __future__ import annotations

import socket
import time
import urllib.request
from dataclasses import dataclass

PROBE_TIMEOUT = 5.0
TRICKLE_INTERVAL = 0.5
PROBE_INTERVAL = 0.05


@dataclass(frozen=True)
class SlowClientProbe:
    answered: int
    failed: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    still_connected: int


def probe_under_slow_clients(port: int, *, headers: int, bodies: int, seconds: float) -> SlowClientProbe:
    """Open `headers` sockets that never finish their headers and `bodies` that never finish a 100,000-byte
    body, send one more byte on each every half second, and time /healthz every 50 ms meanwhile."""
    sockets: list[socket.socket] = []
    times: list[float] = []
    failed = 0
    try:
        for _ in range(headers):
            sock = socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT)
            sock.sendall(b"POST /api/event HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            sockets.append(sock)
        for _ in range(bodies):
            sock = socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT)
            sock.sendall(b"POST /api/event HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100000\r\n\r\n{")
            sockets.append(sock)
        open_sockets = list(sockets)
        deadline = time.monotonic() + seconds
        next_trickle = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_trickle:
                open_sockets = [sock for sock in open_sockets if _trickle(sock)]
                next_trickle = time.monotonic() + TRICKLE_INTERVAL
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=PROBE_TIMEOUT) as answer:
                    answer.read()
                times.append((time.perf_counter() - started) * 1000)
            except OSError:
                failed += 1
            time.sleep(PROBE_INTERVAL)
        still_connected = sum(1 for sock in open_sockets if _trickle(sock))
    finally:
        for sock in sockets:
            sock.close()
    times.sort()
    return SlowClientProbe(
        answered=len(times), failed=failed,
        p50_ms=times[len(times) // 2] if times else float("inf"),
        p99_ms=times[min(len(times) - 1, int(len(times) * 0.99))] if times else float("inf"),
        max_ms=times[-1] if times else float("inf"), still_connected=still_connected)


def _trickle(sock: socket.socket) -> bool:
    """One more byte; False once the server has closed the socket."""
    try:
        sock.send(b"a")
        return True
    except OSError:
        return False
