"""The HTML dashboard: `/events` and `/metrics`, rendered on the server and enhanced with htmx.

Page handlers call the service layer directly, never the JSON API over HTTP,
and work without JavaScript; htmx only swaps parts of them in place. May import
`core`, `services`, `jobs` and `http`; never `app.api`.
"""
from __future__ import annotations

import logging

from flask import Blueprint, Response, redirect, request, url_for
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError
from werkzeug.wrappers import Response as BaseResponse

from ..http import policy
from ..http.errors import ApiError, query_timed_out, unavailable_dependency

bp = Blueprint("web", __name__)

log = logging.getLogger(__name__)

from . import csrf, events, login, metrics  # noqa: E402,F401  (routes and template globals register on import)
from .rendering import message_response, wants_fragment  # noqa: E402


@bp.errorhandler(ApiError)
def refused(exc: ApiError) -> BaseResponse:
    """A request its route's policy refused, said as the dashboard says things: the login page for a visitor
    without a live sign-in, a message (a page, or the alert region for htmx) for anything else."""
    if exc.code == policy.SIGN_IN_REQUIRED:
        login_url = url_for("web.login", next=request.full_path.rstrip("?"))
        if wants_fragment():
            return Response("Sign in again.", status=401, headers={"HX-Redirect": login_url})
        return redirect(login_url)
    if exc.code == policy.RATE_LIMITED:
        response = message_response(f"Too many requests from you just now; try again in {exc.retry_after} s.",
                                    exc.status)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    response = message_response(exc.message, exc.status)
    response.headers.update(exc.headers or {})
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


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
