"""The error envelope of the JSON API and the exceptions that map onto it.

Every failure under `/api/` answers `{"error": {"code", "message", "field"}}`
with a 4xx or 503 status; nothing leaks a stack trace.
"""
from __future__ import annotations

import logging
from typing import Any

import psycopg
from flask import Flask, Response, jsonify, request
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


class ApiError(Exception):
    """A client-visible error with its HTTP status and machine-readable code."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, status: int | None = None,
                 code: str | None = None, details: Any = None, headers: dict[str, str] | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details
        self.headers = headers
        self.retry_after = retry_after
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class ValidationError(ApiError):
    status = 400
    code = "invalid_field"


class ConflictError(ApiError):
    status = 409
    code = "conflict"


class NotFoundError(ApiError):
    status = 404
    code = "not_found"


def error_response(status: int, code: str, message: str, field: str | None = None,
                   details: Any = None, headers: dict[str, str] | None = None,
                   retry_after: int | None = None) -> Response:
    """The envelope; a 503 or 429 also says when to retry, in the body and in `Retry-After`."""
    body: dict[str, Any] = {"code": code, "message": message, "field": field}
    if details is not None:
        body["details"] = details
    if status == 503 and retry_after is None:
        retry_after = RETRY_AFTER_SECONDS
    if retry_after is not None:
        body["retry_after"] = retry_after
        headers = {**(headers or {}), "Retry-After": str(retry_after)}
    response = jsonify(error=body)
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


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/api"


def init_app(app: Flask) -> None:
    """Answer API errors with the envelope; leave the HTML pages' errors to Flask."""

    @app.errorhandler(ApiError)
    def handle_api_error(exc: ApiError) -> Response:
        if not _wants_json():  # a dashboard page: say it in words (rate limits on the login form)
            response = Response(exc.message, status=exc.status, mimetype="text/plain", headers=exc.headers)
            if exc.retry_after is not None:
                response.headers["Retry-After"] = str(exc.retry_after)
            return response
        return error_response(exc.status, exc.code, exc.message, exc.field, exc.details, exc.headers,
                              exc.retry_after)

    @app.errorhandler(HTTPException)
    def handle_http_error(exc: HTTPException) -> Response | HTTPException:
        if not _wants_json():
            return exc
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            message = f"request body is larger than {app.config['MAX_BODY_BYTES']} bytes"
        response = error_response(status, _HTTP_CODES.get(status, "http_error"), message)
        if status == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response

    @app.errorhandler(OperationalError)
    @app.errorhandler(psycopg.OperationalError)  # the event write path talks to the driver directly
    def handle_database_down(exc: Exception) -> Response:
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
        log.warning("database unavailable: %s", cause.__class__.__name__)
        return error_response(503, "database_unavailable", "the database is unavailable, retry later")

    @app.errorhandler(RedisConnectionError)
    @app.errorhandler(RedisTimeoutError)
    def handle_queue_down(exc: Exception) -> Response:
        log.warning("redis unavailable: %s", exc.__class__.__name__)
        return error_response(503, "queue_unavailable", "the job queue is unavailable, retry later")
