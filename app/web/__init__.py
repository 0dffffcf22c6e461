"""The HTML dashboard: `/events` and `/metrics`, rendered on the server and enhanced with htmx.

Page handlers call the service layer directly, never the JSON API over HTTP,
and work without JavaScript; htmx only swaps parts of them in place. May import
`core`, `services`, `jobs` and `http`; never `app.api`.
"""
from __future__ import annotations

import logging

from flask import Blueprint, Response
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError

from ..http.errors import query_timed_out, unavailable_dependency

bp = Blueprint("web", __name__)

log = logging.getLogger(__name__)

from . import events, guard, login, metrics  # noqa: E402,F401  (routes and the request gate register on import)
from .rendering import message_response  # noqa: E402


@bp.errorhandler(OperationalError)
@bp.errorhandler(RedisError)
def unavailable(exc: Exception) -> Response:
    """A 503 with a message instead of a 500 when the database or Redis is down, or a read took too long."""
    if query_timed_out(exc):
        log.warning("dashboard query cancelled at the statement timeout")
        return message_response("This view took too long to read and was stopped; narrow the filters "
                                "(a user, a time range) or try again later.", 503)
    log.warning("dashboard dependency unavailable: %s", exc.__class__.__name__)
    return message_response(f"The {unavailable_dependency(exc)} is unavailable right now; try again in a moment.",
                            503)
