"""The tracking service: an application factory and nothing that runs at import."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask, redirect, url_for
from werkzeug.wrappers import Response

from . import cli, errors, queue
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
    logging.basicConfig(level=app.config["LOG_LEVEL"].upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR))
    errors.init_app(app)
    queue.init_app(app)
    cli.init_app(app)

    from .api import bp as api_bp
    app.register_blueprint(api_bp)

    @app.get("/")
    def index() -> Response:
        return redirect(url_for("api.get_events"))

    return app

