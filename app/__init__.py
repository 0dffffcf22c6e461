"""The tracking service: an application factory and nothing that runs at import."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask, redirect, url_for
from werkzeug.wrappers import Response

from . import auth, cli, errors, headers, health, limits, log, openapi, queue, telemetry
from .config import finalize_config, load_config
from .extensions import db, migrate
from .json_provider import OrjsonProvider
from .sessions import PagesOnlySessionInterface

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app from the environment, with `test_config` overriding it."""
    app = Flask(__name__)
    config = load_config()
    config.update(test_config or {})
    finalize_config(config)
    app.config.from_mapping(config)
    app.json = OrjsonProvider(app)
    app.session_interface = PagesOnlySessionInterface()
    log.init_app(app)
    telemetry.init_app(app)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR))
    errors.init_app(app)
    headers.init_app(app)
    auth.init_app(app)
    limits.init_app(app)
    queue.init_app(app)
    cli.init_app(app)
    health.init_app(app)
    openapi.init_app(app)

    from .api import bp as api_bp
    app.register_blueprint(api_bp)
    from .web import bp as web_bp
    app.register_blueprint(web_bp)

    @app.get("/")
    def index() -> Response:
        return redirect(url_for("web.events"))

    return app

