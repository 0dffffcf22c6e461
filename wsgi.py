"""The app for the web server (`front`, served by `python -m app.serving`) and for `flask --app wsgi ...`."""
from __future__ import annotations

import gc
import sys

from app import create_app
from app.core.settings import ConfigError
from app.extensions import settings
from app.serving.server import front_for

APP_LOAD_ERROR = 4  # the exit status of a worker whose app could not load: the setting's message says why

try:
    app = create_app()
except ConfigError as exc:
    # The message names the setting and what to do; a traceback would only bury it.
    print(f"refusing to start: {exc}", file=sys.stderr, flush=True)
    sys.exit(APP_LOAD_ERROR)
with app.app_context():
    front = front_for(app, settings())
# The objects built so far live as long as the process: freezing them spares every
# full collection a walk over all of them, which batch requests, each creating a
# great many short-lived objects, would otherwise trigger often.
gc.freeze()
