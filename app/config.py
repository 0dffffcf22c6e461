"""Every setting of the service, read from the environment in one place.

`load_config()` is called by the application factory, never at import time, so
tests and the launcher can set the environment first. Each entry names its
environment variable, its default and how to parse it; the README's
configuration table mirrors this list.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import auth


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
    Setting("LOG_FORMAT", "kv", str, "`kv` (key=value) or `json`: one structured line per request and per job."),
    Setting("READYZ_TIMEOUT_SECONDS", 0.8, float, "Deadline of the `/readyz` checks; a slower dependency counts as down."),
    Setting("PROMETHEUS_MULTIPROC_DIR", None, str,
            "Directory where gunicorn's workers keep Prometheus counters, so a scrape sums them all; set it "
            "(as an environment variable: the library reads it at import) whenever GUNICORN_WORKERS > 1."),
    Setting("GUNICORN_WORKERS", 2, int, "gunicorn worker processes (`gunicorn.conf.py`)."),
    Setting("GUNICORN_THREADS", 4, int, "Threads per gunicorn worker."),
    Setting("GUNICORN_GRACEFUL_TIMEOUT", 25, int, "Seconds gunicorn lets in-flight requests finish after SIGTERM."),
    Setting("MAX_BODY_BYTES", 1024 * 1024, int, "Largest accepted request body."),
    Setting("METADATA_MAX_BYTES", 16 * 1024, int, "Largest accepted event metadata, JSON-encoded."),
    Setting("EVENT_FUTURE_TOLERANCE_SECONDS", 300, int, "How far in the future an event's occurred_at may lie."),
    Setting("LIST_DEFAULT_LIMIT", 100, int, "Page size of list endpoints when `limit` is not given."),
    Setting("LIST_MAX_LIMIT", 1000, int, "Largest `limit` accepted by list endpoints."),
    Setting("RATE_LIMIT_INGEST", "1000 per second", str, "Budget per client for recording events (empty: no limit)."),
    Setting("RATE_LIMIT_RECALCULATE", "10 per minute", str, "Budget per client for triggering calculations (empty: no limit)."),
    Setting("RATE_LIMIT_LOGIN", "10 per minute", str, "Budget per address for dashboard sign-in attempts (empty: no limit)."),
    Setting("ACCESS_CONTROL", "auto", str, "`on`, `off`, or `auto`: on in production or once any token or admin password is set."),
    Setting("API_TOKENS_INGEST", "", str, "Comma-separated bearer tokens that may only record events."),
    Setting("API_TOKENS_FULL", "", str, "Comma-separated bearer tokens that may use the whole API."),
    Setting("ADMIN_USERNAME", "admin", str, "Dashboard login name."),
    Setting("ADMIN_PASSWORD_HASH", "", str, "Dashboard password hash (`flask --app wsgi hash-password`)."),
)


LOG_FORMATS = ("kv", "json")


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
    if not isinstance(logging.getLevelName(str(config["LOG_LEVEL"]).upper()), int):
        raise ConfigError(f"LOG_LEVEL={config['LOG_LEVEL']!r} is not a log level such as INFO or DEBUG")
    if config["LOG_FORMAT"] not in LOG_FORMATS:
        raise ConfigError(f"LOG_FORMAT={config['LOG_FORMAT']!r} must be one of {', '.join(LOG_FORMATS)}")
    if config["APP_ENV"] == "production" and config["SECRET_KEY"] in ("", "dev-insecure-secret"):
        raise ConfigError("SECRET_KEY must be set to a secret value when APP_ENV=production")
    problems = auth.check_config(config)
    if problems:
        raise ConfigError("access control is on but " + "; ".join(problems) + " (or set ACCESS_CONTROL=off)")

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
            # statement parameters carry request data (event metadata); keep them out of errors and logs
            "hide_parameters": True,
            # every session computes in UTC, whatever the server's default time zone
            "connect_args": {"options": "-c timezone=UTC"},
        },
    )
    config["MAX_CONTENT_LENGTH"] = config["MAX_BODY_BYTES"]
    config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    config.setdefault("SESSION_COOKIE_SECURE", config["APP_ENV"] == "production")
    config.setdefault("PERMANENT_SESSION_LIFETIME", 12 * 3600)


def sqlalchemy_url(url: str) -> str:
    """Point a plain `postgresql://` URL at the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def settings_table() -> str:
    """The README's configuration table, rendered from SETTINGS so the two cannot drift apart."""
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for setting in SETTINGS:
        default = "(unset)" if setting.default is None else f"`{setting.default}`"
        lines.append(f"| `{setting.key}` | {default} | {setting.doc.replace('|', '&#124;')} |")
    return "\n".join(lines)
