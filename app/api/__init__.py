"""The JSON API blueprint, mounted at /api, and its OpenAPI document.

Thin routes: parse with `app.core.validation`, call `app.services` or
`app.jobs`, shape the answer in `representations`. May import `core`,
`services`, `jobs`, `http` and `ops`; never `app.web`.
"""
from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api")

from . import events, export, metrics, openapi  # noqa: E402,F401  (routes register on import)
