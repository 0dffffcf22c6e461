"""Failures as HTTP answers, in one place: the JSON envelope under `/api/`, words on the pages.

Every failure under `/api/` answers `{"error": {"code", "message", "field"}}`
with a 4xx or 503 status; nothing leaks a stack trace. The domain errors of
`app.core.errors` get their status here, and so does a dependency that is down
(PostgreSQL or Redis: 503 with `Retry-After`), and a read the database
cancelled at its statement timeout (503 `query_timeout`: the service chose
to give up, so it is not the client's error, but retrying the same query
only helps once the database is less busy; narrowing the filters helps now). `ApiError` is for what only HTTP
knows of: authentication, rate limits, content types.
"""
from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec
import psycopg
from flask import Flask, Response, jsonify, request
from msgspec import UNSET, Meta, UnsetType
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

from ..core.errors import ConflictError, DomainError, NotFoundError, UnavailableError, ValidationError
from . import API_PREFIX

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5

STATUS_OF: dict[type[DomainError], int] = {
    ValidationError: 400,
    ConflictError: 409,
    NotFoundError: 404,
    UnavailableError: 503,
}


class ApiError(DomainError):
    """A client-visible error that only HTTP has: its status travels with it."""

    def __init__(self, message: str, *, status: int, code: str, headers: dict[str, str] | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.headers = headers
        self.retry_after = retry_after


class ItemError(msgspec.Struct, forbid_unknown_fields=True):
    """What is wrong with one event of a batch."""

    index: Annotated[int, Meta(ge=0)]
    field: str | None
    message: str


class ErrorDetail(msgspec.Struct, forbid_unknown_fields=True):
    code: Annotated[str, Meta(description="Machine-readable, e.g. `invalid_field`.", examples=["invalid_field"])]
    message: Annotated[str, Meta(description="For humans.")]
    field: Annotated[str | None, Meta(description="The body field or query parameter at fault, if one is.")]
    details: Annotated[list[ItemError], Meta(description="Per-item errors of a batch.")] | UnsetType = UNSET
    retry_after: Annotated[int, Meta(description="On 429 and 503: seconds to wait before retrying.")] | UnsetType \
        = UNSET


class Error(msgspec.Struct, forbid_unknown_fields=True):
    """The envelope of every error under /api."""

    error: ErrorDetail


def error_response(status: int, code: str, message: str, field: str | None = None,
                   details: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None,
                   retry_after: int | None = None) -> Response:
    """The envelope; a 503 or 429 also says when to retry, in the body and in `Retry-After`."""
    body = ErrorDetail(code=code, message=message, field=field)
    if details is not None:
        body.details = msgspec.convert(details, list[ItemError])
    if status == 503 and retry_after is None:
        retry_after = RETRY_AFTER_SECONDS
    if retry_after is not None:
        body.retry_after = retry_after
        headers = {**(headers or {}), "Retry-After": str(retry_after)}
    response = jsonify(Error(error=body))
    response.status_code = status
    response.headers.update(headers or {})
    return response


_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def is_api_request() -> bool:
    return request.path.startswith(API_PREFIX) or request.path == "/api"


def unavailable_dependency(exc: Exception) -> str:
    """Which dependency an exception says is down: `database` or `job queue`."""
    return "job queue" if isinstance(exc, RedisError) else "database"


QUERY_TIMEOUT_MESSAGE = ("the query took too long and was cancelled; narrow the filters (a user, a time range) "
                         "or retry later")


def query_timed_out(exc: Exception) -> bool:
    """Whether the database cancelled the statement (statement_timeout), rather than being down."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
    return isinstance(cause, psycopg.errors.QueryCanceled)


def init_app(app: Flask, max_body_bytes: int) -> None:
    """Answer API errors with the envelope; leave the HTML pages' errors to Flask and the web blueprint."""

    @app.errorhandler(DomainError)
    def handle_domain_error(exc: DomainError) -> Response:
        status = exc.status if isinstance(exc, ApiError) else STATUS_OF.get(type(exc), 400)
        headers = exc.headers if isinstance(exc, ApiError) else None
        retry_after = exc.retry_after if isinstance(exc, ApiError) else None
        if not is_api_request():  # a dashboard page: say it in words
            response = Response(exc.message, status=status, mimetype="text/plain", headers=headers)
            if retry_after is not None:
                response.headers["Retry-After"] = str(retry_after)
            return response
        return error_response(status, exc.code, exc.message, exc.field, exc.details, headers, retry_after)

    @app.errorhandler(HTTPException)
    def handle_http_error(exc: HTTPException) -> Response | HTTPException:
        if not is_api_request():
            return exc
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            message = f"request body is larger than {max_body_bytes} bytes"
        response = error_response(status, _HTTP_CODES.get(status, "http_error"), message)
        if status == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response

    @app.errorhandler(OperationalError)
    @app.errorhandler(psycopg.OperationalError)
    def handle_database_down(exc: Exception) -> Response:
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
        if query_timed_out(exc):
            log.warning("query cancelled at the statement timeout: %s %s", request.method, request.path)
            return error_response(503, "query_timeout", QUERY_TIMEOUT_MESSAGE)
        log.warning("database unavailable: %s", cause.__class__.__name__)
        return error_response(503, "database_unavailable", "the database is unavailable, retry later")

    @app.errorhandler(RedisConnectionError)
    @app.errorhandler(RedisTimeoutError)
    def handle_queue_down(exc: Exception) -> Response:
        log.warning("redis unavailable: %s", exc.__class__.__name__)
        return error_response(503, "queue_unavailable", "the job queue is unavailable, retry later")
