"""One structured log line per request, and the request's id on every line logged while it runs.

The id (`ServiceRequest.id`: a valid `X-Request-ID` header, or a new one) is
echoed in the response and stamped on every record, so one request's lines
can be found across the web tier. The line format itself is `app.core.logs`.
Routes whose policy says so (probes and scrapes) get no line.
"""
from __future__ import annotations

import logging
import time

from flask import Flask, has_request_context, request
from werkzeug.wrappers import Response

from ..core.logs import configure_logging, log_fields
from ..core.settings import Settings
from .requests import REQUEST_ID_HEADER

request_log = logging.getLogger("app.request")


class RequestIdFilter(logging.Filter):
    """Stamp the current request's id on every record logged while the request runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id") and has_request_context():
            record.request_id = getattr(request, "id", None)  # another app's request has none
        return True


def init_app(app: Flask, settings: Settings) -> None:
    """Configure logging from the settings and log one line per request."""
    handler = configure_logging(settings.log_level, settings.log_format)
    if not any(isinstance(existing, RequestIdFilter) for existing in handler.filters):
        handler.addFilter(RequestIdFilter())
    app.after_request(_finish_request)


def _finish_request(response: Response) -> Response:
    request_id = request.id  # type: ignore[attr-defined]
    response.headers[REQUEST_ID_HEADER] = request_id
    declared = request.policy  # type: ignore[attr-defined]
    # the line's fields are only gathered when it will be written (LOG_LEVEL=WARNING writes none)
    if (declared is None or declared.logged) and request_log.isEnabledFor(logging.INFO):
        duration_ms = round((time.perf_counter() - request.started) * 1000, 2)  # type: ignore[attr-defined]
        request_log.info("request", extra={
            "request_id": request_id,
            **log_fields(method=request.method, path=request.path, status=response.status_code,
                         duration_ms=duration_ms),
        })
    return response
