"""gunicorn settings: `gunicorn -c gunicorn.conf.py wsgi:app` (compose's web service).

Values come from the app's SETTINGS (app/core/settings.py) like every other setting,
so docs/operations.md's table documents them and compose passes them by name.

On SIGTERM gunicorn stops accepting connections and gives requests in flight
GUNICORN_GRACEFUL_TIMEOUT seconds to finish before it kills its workers.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from prometheus_client import multiprocess

from app.core.settings import ConfigError, load_config

try:
    _settings = load_config()
except ConfigError as exc:
    sys.exit(f"refusing to start: {exc}")  # the message names the setting; a traceback would bury it

bind = [f"0.0.0.0:{_settings['PORT']}"]
workers = _settings["GUNICORN_WORKERS"]
threads = _settings["GUNICORN_THREADS"]
graceful_timeout = _settings["GUNICORN_GRACEFUL_TIMEOUT"]
loglevel = _settings["LOG_LEVEL"].lower()
# gunicorn's own lines (boot, worker exits, timeouts) in the app's format; no access log,
# since the app writes one structured line per request (app/http/request_log.py).
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"structured": {"()": "app.core.logs.StructuredFormatter", "output": _settings["LOG_FORMAT"]}},
    "handlers": {
        "error_console": {"class": "logging.StreamHandler", "formatter": "structured", "stream": "ext://sys.stderr"},
        "nowhere": {"class": "logging.NullHandler"},
    },
    "root": {"level": _settings["LOG_LEVEL"].upper(), "handlers": []},  # create_app() installs the app's
    "loggers": {
        "gunicorn.error": {"level": _settings["LOG_LEVEL"].upper(), "handlers": ["error_console"], "propagate": False},
        "gunicorn.access": {"handlers": ["nowhere"], "propagate": False},
    },
}
# No `gunicornc` control socket: its default path under $HOME would be shared by every gunicorn of
# the user (and a container's user may have no writable home).
control_socket_disable = True
# Worker heartbeats on a RAM disk when there is one: a slow container disk then cannot stall workers.
if Path("/dev/shm").is_dir():
    worker_tmp_dir = "/dev/shm"


def on_starting(server: Any) -> None:
    """Forget the Prometheus files of a previous run, so its dead workers do not count twice."""
    directory = _settings["PROMETHEUS_MULTIPROC_DIR"]
    if directory:
        for stale in Path(directory).glob("*.db"):
            stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    """Let prometheus_client drop the live gauges of a worker that exited."""
    if _settings["PROMETHEUS_MULTIPROC_DIR"]:
        multiprocess.mark_process_dead(worker.pid, _settings["PROMETHEUS_MULTIPROC_DIR"])
