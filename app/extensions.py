"""The Flask extension objects, and the per-app objects every adapter takes its dependencies from.

`create_app` builds one `Settings`, one `Database` and (lazily, once per
process) one Redis client per app and keeps them in `app.extensions`; routes,
CLI commands and jobs read them through the accessors below and hand them to
the services and job functions explicitly. `now()` is the one clock the
adapters stamp requests and runs with, so tests can move time instead of waiting.
"""
from __future__ import annotations

from datetime import datetime

from flask import Flask, current_app
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from redis import Redis

from .core.database import Database
from .core.settings import Settings
from .core.tables import metadata
from .core.times import utcnow

db = SQLAlchemy(metadata=metadata)
migrate = Migrate()

SETTINGS_KEY = "tracking.settings"
DATABASE_KEY = "tracking.database"
REDIS_KEY = "tracking.redis"
RATE_LIMITS_KEY = "tracking.rate_limits"


def init_app(app: Flask, settings: Settings) -> None:
    """Bind the settings, the database engines and a lazily made Redis client to `app`."""
    app.extensions[SETTINGS_KEY] = settings
    db.init_app(app)
    with app.app_context():
        app.extensions[DATABASE_KEY] = Database(db.engine, db.engines.get("read"))
    app.extensions[REDIS_KEY] = None


def settings() -> Settings:
    return current_app.extensions[SETTINGS_KEY]


def database() -> Database:
    return current_app.extensions[DATABASE_KEY]


def now() -> datetime:
    """The current time: `utcnow()`, unless a test built the app with a `CLOCK` callable in its config."""
    clock = current_app.config.get("CLOCK")
    return clock() if clock is not None else utcnow()


def redis_client() -> Redis:
    """The app's Redis client, made on first use in this process (it holds its own connection pool)."""
    client = current_app.extensions.get(REDIS_KEY)
    if client is None:
        config = settings()
        client = Redis.from_url(config.redis_url, socket_connect_timeout=config.redis_connect_timeout_seconds,
                                socket_timeout=config.redis_socket_timeout_seconds, health_check_interval=30)
        current_app.extensions[REDIS_KEY] = client
    return client


def close(app: Flask) -> None:
    """Close the app's connections (tests and tools build many apps in one process)."""
    client = app.extensions.get(REDIS_KEY)
    if client is not None:
        client.close()
        app.extensions[REDIS_KEY] = None
    limits = app.extensions.pop(RATE_LIMITS_KEY, None)
    if limits is not None:
        limits.close()
    with app.app_context():
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()
