"""The tracking service: an application factory and nothing that runs at import.

The packages, from the bottom up: `core` (settings, database, tables, time,
input rules), `services` (commands and queries), `runtime` (what a process
keeps between requests, with one lifecycle), `jobs` (RQ, scheduler, CLI),
`http` (request plumbing shared by the blueprints: each route's policy and
the gate that enforces it), `ops` (probes, Prometheus), `api` (JSON) and
`web` (HTMX dashboard); `dev` is tooling for `make run` and the tests, never
imported here. `tests/test_layers.py` keeps those arrows.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask, redirect, url_for
from werkzeug.wrappers import Response

from . import extensions
from .core.database import SESSION_OPTIONS
from .core.settings import SETTINGS, Settings, load_config, sqlalchemy_url
from .extensions import migrate
from .http import cors, errors, headers, policy, proxies, request_log
from .http.json_provider import MsgspecProvider
from .http.policy import Access
from .http.requests import ServiceRequest
from .http.sessions import PagesOnlySessionInterface
from .jobs import cli
from .ops import health, prometheus

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def flask_config(settings: Settings) -> dict[str, Any]:
    """What Flask and its extensions read from `app.config`, derived from the settings."""
    assert settings.database_url is not None  # Settings.check() refuses to start without it
    connect_args = {"options": SESSION_OPTIONS}
    binds = {"read": {
        "url": sqlalchemy_url(settings.database_read_url),
        # The replica may go away on its own: a pooled connection it dropped is found at checkout
        # (one round trip per read) so the read moves to the primary instead of failing.
        "pool_pre_ping": True,
        "connect_args": {**connect_args, "connect_timeout": 2},
    }} if settings.database_read_url else {}
    return {
        "SECRET_KEY": settings.secret_key,
        "SQLALCHEMY_DATABASE_URI": sqlalchemy_url(settings.database_url),
        "SQLALCHEMY_BINDS": binds,
        "SQLALCHEMY_ENGINE_OPTIONS": {
            "pool_size": settings.database_pool_size,
            # No ping on every checkout: it is one more round trip per request. Each
            # pooled connection the server dropped fails one request with a 503
            # (Retry-After) and is replaced; pool_recycle retires idle ones first.
            "pool_pre_ping": False,
            "pool_recycle": 1800,
            # statement parameters carry request data (event metadata); keep them out of errors and logs
            "hide_parameters": True,
            "connect_args": connect_args,
        },
        "MAX_CONTENT_LENGTH": settings.max_body_bytes,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": settings.production,
        "PERMANENT_SESSION_LIFETIME": settings.session_lifetime_seconds,
        # An open service answers only to its own names: a page whose name was rebound to this address
        # sends its own `Host`, and gets 400 instead of the events.
        "TRUSTED_HOSTS": None if settings.access_control_enabled else settings.open_mode_hosts,
    }


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app from the environment, with `test_config` (keyed by variable name) overriding it."""
    app = Flask(__name__)
    app.request_class = ServiceRequest
    config = {**load_config(), **(test_config or {})}
    settings = Settings.from_mapping(config)
    # Flask's own keys (TESTING, or an engine option a test needs) may come in test_config too.
    names = {setting.key for setting in SETTINGS}
    app.config.from_mapping({**flask_config(settings),
                             **{key: value for key, value in config.items() if key not in names}})
    app.json = MsgspecProvider(app)
    app.session_interface = PagesOnlySessionInterface()
    extensions.init_app(app, settings)
    migrate.init_app(app, extensions.db, directory=str(MIGRATIONS_DIR))
    proxies.init_app(app, settings)
    policy.init_app(app)
    request_log.init_app(app, settings)
    prometheus.init_app(app, settings)
    errors.init_app(app, settings.max_body_bytes)
    headers.init_app(app, settings)
    cors.init_app(app, settings)
    cli.init_app(app)
    health.init_app(app)

    from .api import bp as api_bp
    app.register_blueprint(api_bp)
    from .web import bp as web_bp
    app.register_blueprint(web_bp)

    @app.get("/")
    @policy.policy(Access.OPEN, budgets=(), csrf=False)
    def index() -> Response:
        return redirect(url_for("web.events"))

    # Flask's own route for the static files: the same for everyone, and no data
    policy.policy(Access.OPEN, budgets=(), csrf=False, cacheable=True)(app.view_functions["static"])
    return app
