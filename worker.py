"""Start an RQ worker for the app's queues: `python worker.py [--burst]` (what compose and make run use)."""
from __future__ import annotations

import sys

from app import create_app
from app.core.settings import ConfigError
from app.extensions import runtime, settings
from app.jobs.queue import run_worker

if __name__ == "__main__":
    try:
        app = create_app()
    except ConfigError as exc:
        sys.exit(f"refusing to start: {exc}")  # the message names the setting; a traceback would bury it
    with app.app_context():
        config = settings()
        run_worker(runtime().background_redis, config.redis_namespace, log_level=config.log_level,
                   burst="--burst" in sys.argv[1:])
