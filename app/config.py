"""Every setting of the service, read from the environment in one place.

`load_config()` is called by the application factory, never at import time, so
tests and the launcher can set the environment first. Each entry names its
environment variable, its default and how to parse it; the README's
configuration table mirrors this list.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """A setting is missing or malformed; the process must not start."""


@dataclass(frozen=True)
class Setting:
    key: str
    default: Any
    parse: Callable[[str], Any] = str
    doc: str = ""


SETTINGS: tuple[Setting, ...] = (
    Setting("APP_ENV", "development", str, "`production` turns on the start-up safety checks."),
    Setting("SECRET_KEY", "dev-insecure-secret", str, "Signs session cookies; must be set in production."),
    Setting("DATABASE_URL", None, str, "PostgreSQL URL for writes (and reads unless DATABASE_READ_URL is set)."),
    Setting("DATABASE_READ_URL", None, str, "Optional PostgreSQL replica URL that serves the list queries."),
    Setting("DATABASE_POOL_SIZE", 5, int, "Connections kept per process."),
    Setting("REDIS_URL", "redis://127.0.0.1:6379/0", str, "Redis URL for the job queue and the scheduler."),
    Setting("REDIS_NAMESPACE", "tracking", str, "Prefix of every queue and scheduler key, so several deployments can share one Redis."),
    Setting("PORT", 8080, int, "Port the web server listens on."),
    Setting("METRICS_WINDOW_HOURS", 4, int, "Size of a metrics window in hours; must divide 24."),
    Setting("METRICS_SCHEDULE", "1 */4 * * *", str, "Cron expression (UTC) of the periodic calculation."),
    Setting("METRICS_SETTLE_SECONDS", 30, int, "A window counts as closed this long after its end, so in-flight writes land first."),
    Setting("METRICS_CHUNK_WINDOWS", 42, int, "Windows computed per transaction during catch-up."),
    Setting("METRICS_JOB_TIMEOUT", 1800, int, "Seconds a calculation job may run before RQ stops it."),
    Setting("METRICS_JOB_RETRIES", 3, int, "Times a failed calculation job is retried."),
    Setting("LOG_LEVEL", "INFO", str, "Python log level."),
    Setting("MAX_BODY_BYTES", 1024 * 1024, int, "Largest accepted request body."),
    Setting("METADATA_MAX_BYTES", 16 * 1024, int, "Largest accepted event metadata, JSON-encoded."),
    Setting("EVENT_FUTURE_TOLERANCE_SECONDS", 300, int, "How far in the future an event's occurred_at may lie."),
    Setting("LIST_DEFAULT_LIMIT", 100, int, "Page size of list endpoints when `limit` is not given."),
    Setting("LIST_MAX_LIMIT", 1000, int, "Largest `limit` accepted by list endpoints."),
)


def load_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Build the Flask config mapping from the environment (or a given mapping)."""
    environ = os.environ if environ is None else environ
    config: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = environ.get(setting.key)
        if raw is None or raw == "":
            config[setting.key] = setting.default
            continue
        try:
            config[setting.key] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{setting.key}={raw!r} is not valid: {exc}") from None
    return config


def finalize_config(config: dict[str, Any]) -> None:
    """Check the combined settings and derive what Flask and its extensions read."""
    if not config.get("DATABASE_URL"):
        raise ConfigError("DATABASE_URL is not set (make run sets it for you).")
    hours = config["METRICS_WINDOW_HOURS"]
    if hours <= 0 or 24 % hours:
        raise ConfigError(f"METRICS_WINDOW_HOURS={hours} must divide 24")
    if config["APP_ENV"] == "production" and config["SECRET_KEY"] in ("", "dev-insecure-secret"):
        raise ConfigError("SECRET_KEY must be set to a secret value when APP_ENV=production")

    config["SQLALCHEMY_DATABASE_URI"] = sqlalchemy_url(config["DATABASE_URL"])
    if config.get("DATABASE_READ_URL"):
        config.setdefault("SQLALCHEMY_BINDS", {})["read"] = sqlalchemy_url(config["DATABASE_READ_URL"])
    config.setdefault(
        "SQLALCHEMY_ENGINE_OPTIONS",
        {
            "pool_size": config["DATABASE_POOL_SIZE"],
            # No ping on every checkout: it is one more round trip per request. Each
            # pooled connection the server dropped fails one request with a 503
            # (Retry-After) and is replaced; pool_recycle retires idle ones first.
            "pool_pre_ping": False,
            "pool_recycle": 1800,
            # every session computes in UTC, whatever the server's default time zone
            "connect_args": {"options": "-c timezone=UTC"},
        },
    )
    config["MAX_CONTENT_LENGTH"] = config["MAX_BODY_BYTES"]


def sqlalchemy_url(url: str) -> str:
    """Point a plain `postgresql://` URL at the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url
