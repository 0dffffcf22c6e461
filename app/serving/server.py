"""The web process: `make serve`, `python -m app.serving`, the one way the web server starts.

granian was chosen by measurement (docs/performance.md, "The web server"):
its HTTP is Rust, so headers are parsed and slow ones timed out without
Python, and the front (`front.py`) reads every body on the event loop before
a thread sees it. On top of granian's master this adds what gunicorn gave:

- a heartbeat per worker (`app.runtime.heartbeats`: each worker's loop beats
  every second, and it dies with its master): a worker silent for WEB_TIMEOUT seconds (or still loading the app after
  BOOT_SECONDS) is killed, and granian starts another in its place. It
  watches the loop, as gunicorn watched its worker's main loop: threads
  stuck in a request do not stop the beat;
- Prometheus' multiprocess files: cleared at start, and a dead worker's live
  gauges dropped when it exits;
- graceful stops (SIGTERM: requests in flight get WEB_GRACEFUL_TIMEOUT
  seconds) and graceful recycling after WEB_WORKER_LIFETIME seconds or
  WEB_WORKER_MAX_RSS_MIB of memory, both granian's own.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from granian.constants import Interfaces
from granian.http import HTTP1Settings, HTTP2Settings
from granian.server.mp import MPServer
from prometheus_client import multiprocess

from ..core.settings import ConfigError, Settings, load_config
from ..runtime.heartbeats import INTERVAL_SECONDS, Heartbeats, beat
from .front import Front, WSGIApp

log = logging.getLogger("app.serving")

TARGET = "wsgi:front"
# Request line and headers together; hyper answers 431 past it (nginx in compose allows 16 KiB).
HEADER_BUFFER_BYTES = 32 * 1024
H2_STREAMS = 10  # the fewest granian allows
# A worker that has not beaten yet is still loading the app: it gets at least this long.
BOOT_SECONDS = 60


class WebServer(MPServer):
    """granian's multi-process server, with heartbeats and Prometheus' per-worker files."""

    def __init__(self, settings: Settings, **options: Any) -> None:
        super().__init__(**options)
        self.settings = settings
        self.heartbeats: Heartbeats | None = None
        self._stopping = threading.Event()

    def startup(self, spawn_target: Any, target_loader: Any) -> None:
        directory = self.settings.prometheus_multiproc_dir
        if directory:  # a previous run's dead workers must not count twice
            for stale in Path(directory).glob("*.db"):
                stale.unlink()
        heartbeats = self.heartbeats = Heartbeats()  # before the workers are forked: they inherit its address
        super().startup(spawn_target, target_loader)
        threading.Thread(target=self._watch, args=(heartbeats,), name="web-watchdog", daemon=True).start()

    def shutdown(self, exit_code: int = 0) -> None:
        self._stopping.set()
        try:
            super().shutdown(exit_code)
        finally:
            if self.heartbeats is not None:
                self.heartbeats.remove()

    def _watch(self, heartbeats: Heartbeats) -> None:
        """Kill workers whose heartbeat stopped; forget workers once their process has ended."""
        workers: dict[int, Any] = {}  # every worker seen, until its process has ended
        while not self._stopping.wait(INTERVAL_SECONDS):
            serving = {worker.inner.pid: worker for worker in list(self.wrks) if worker.inner.pid}
            workers.update(serving)
            for pid, worker in serving.items():
                silent = heartbeats.silence(pid)
                if silent is None:  # still loading the app: its birth counts as its last beat
                    silent, limit = time.monotonic() - worker.birth, max(self.settings.web_timeout, BOOT_SECONDS)
                else:
                    limit = self.settings.web_timeout
                if silent > limit and worker.is_alive():
                    log.error("web worker %s sent no heartbeat for %.0f s; killing it", pid, silent)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            for pid in [pid for pid, worker in workers.items() if not worker.is_alive()]:
                del workers[pid]
                heartbeats.forget(pid)
                if self.settings.prometheus_multiproc_dir:
                    multiprocess.mark_process_dead(pid, self.settings.prometheus_multiproc_dir)


def front_for(wsgi_app: WSGIApp, settings: Settings) -> Front:
    """`wsgi_app` behind the front, as the server's workers run it."""
    return Front(wsgi_app, threads=settings.web_threads, body_timeout=settings.web_body_timeout,
                 max_body_bytes=settings.max_body_bytes, on_start=beat)


def build(settings: Settings, target: str = TARGET) -> WebServer:
    """The server as `make serve` runs it, from the settings alone; `target` names the front it serves."""
    formatter = {"()": "app.core.logs.StructuredFormatter", "output": settings.log_format}
    return WebServer(
        settings,
        target=target,
        address=settings.web_host,
        port=settings.port,
        interface=Interfaces.RSGI,
        workers=settings.web_workers,
        blocking_threads=1,  # the front's WEB_THREADS run the app; granian's own pool is not used under RSGI
        http1_settings=HTTP1Settings(header_read_timeout=int(settings.web_header_timeout * 1000),
                                     max_buffer_size=HEADER_BUFFER_BYTES),
        # HTTP/2 (cleartext, for clients that know to ask) under the same header limit, and with few streams
        # per connection: each may hold a body of up to MAX_BODY_BYTES while the loop reads it.
        http2_settings=HTTP2Settings(max_headers_size=HEADER_BUFFER_BYTES, max_concurrent_streams=H2_STREAMS),
        websockets=False,
        log_level=settings.log_level.lower(),
        log_dictconfig={
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"structured": formatter},
            "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured",
                                     "stream": "ext://sys.stderr"}},
            "loggers": {"_granian": {"handlers": ["console"], "propagate": False},
                        "app.serving": {"handlers": ["console"], "propagate": False}},
        },
        log_access=False,  # the app writes one structured line per request, with its id
        respawn_failed_workers=True,
        respawn_interval=1.0,
        workers_lifetime=settings.web_worker_lifetime or None,
        workers_max_rss=settings.web_worker_max_rss_mib or None,
        rss_sample_interval=settings.web_worker_check_seconds,
        workers_kill_timeout=max(1, settings.web_graceful_timeout),
    )


def main(argv: list[str]) -> int:
    """Serve `wsgi:front`, or the front named by the one argument (`make bench` serves its references so)."""
    try:
        settings = Settings.from_mapping(load_config())
    except ConfigError as exc:
        print(f"refusing to start: {exc}", file=sys.stderr, flush=True)  # the message names the setting
        return 2
    build(settings, *argv[:1]).serve()
    return 0
