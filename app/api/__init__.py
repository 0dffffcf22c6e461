"""The JSON API blueprint, mounted at /api."""
from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api")

from . import events, export, metrics  # noqa: E402,F401  (routes register on import)
