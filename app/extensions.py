"""The Flask extension objects, and the accessors through which adapters reach the app's settings, runtime and clock.

`create_app` builds one `Settings` and one `Runtime` per app; routes, CLI
commands and jobs read them through the accessors below and hand what they
need to the services and job functions explicitly. `now()` is the one clock
the adapters stamp requests, files and runs with, so tests can move time
instead of waiting.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime

from flask import Flask, current_app
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from redis import Redis

from .core.database import Database
from .core.settings import Settings
from .core.tables import metadata
from .core.times import utcnow
from .runtime import Runtime

db = SQLAlchemy(metadata=metadata)
migrate = Migrate()

RUNTIME_KEY = "tracking.runtime"


def init_app(app: Flask, settings: Settings) -> None:
    """Bind the database engines and this app's runtime to `app`."""
    db.init_app(app)
    with app.app_context():
        app.extensions[RUNTIME_KEY] = Runtime(settings, db.engine, db.engines.get("read"))


def runtime() -> Runtime:
    return current_app.extensions[RUNTIME_KEY]  # type: ignore[no-any-return]


def settings() -> Settings:
    return runtime().settings


def database() -> Database:
    return runtime().database


def guarded_redis() -> AbstractContextManager[Redis]:
    """The web requests' Redis client, behind the request breaker (`Runtime.guarded_redis`)."""
    return runtime().guarded_redis()


def now() -> datetime:
    """The current time: `utcnow()`, unless a test built the app with a `CLOCK` callable in its config."""
    clock = current_app.config.get("CLOCK")
    return clock() if clock is not None else utcnow()


def close(app: Flask) -> None:
    """Close the app's connections and threads (tests and tools build many apps in one process)."""
    with app.app_context():
        db.session.remove()
    app.extensions[RUNTIME_KEY].close()
