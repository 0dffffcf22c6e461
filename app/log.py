"""Structured logs: one line per request and per job, as key=value or JSON.

`init_app` installs one handler on the root logger (once per process; a later
app only changes its format and level), so our modules, RQ and gunicorn's
error log (see gunicorn.conf.py) all write the same kind of line. Every
request gets an id, taken from a valid `X-Request-ID` header or generated,
that is echoed in the response and stamped on every line logged while the
request runs, so one request's lines can be found across the web tier.

Only what is named here is logged: never headers, bodies or query strings;
credentials inside URLs or `password=` parameters are masked in any message.
"""
from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import datetime, timezone
from typing import Any, TextIO

from flask import Flask, g, has_request_context, request
from werkzeug.wrappers import Response

from .timeutil import format_rfc3339

REQUEST_ID_HEADER = "X-Request-ID"
# Probes and scrapes arrive every few seconds; a line for each would drown the rest.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/internal/metrics"})

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
_URL_CREDENTIALS = re.compile(r"(?P<keep>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@")
_PASSWORD_PARAM = re.compile(r"(?P<keep>\bpassword\s*=\s*)(?:'[^']*'|\S+)", re.IGNORECASE)
_BARE_VALUE = re.compile(r"[^\s\"'=\\\x00-\x1f\x7f]+")

request_log = logging.getLogger("app.request")


def log_fields(**fields: Any) -> dict[str, Any]:
    """The `extra=` of a structured line: `log.info("job finished", extra=log_fields(job_id=...))`."""
    return {"fields": fields}


def redact(text: str) -> str:
    """Mask passwords in URLs (`scheme://user:***@host`) and in `password=...` parameters."""
    text = _URL_CREDENTIALS.sub(r"\g<keep>***@", text)
    return _PASSWORD_PARAM.sub(r"\g<keep>***", text)


def valid_request_id(value: str | None) -> bool:
    """Whether a client's request id is safe to echo and log: 1-128 characters, no spaces or quotes."""
    return value is not None and _REQUEST_ID.fullmatch(value) is not None


class StructuredFormatter(logging.Formatter):
    """One line per record: `ts`, `level`, `logger`, `msg`, the request id and the record's fields."""

    def __init__(self, output: str = "kv") -> None:
        super().__init__()
        self.output = output

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
                  .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        for key, value in getattr(record, "fields", {}).items():
            if isinstance(value, datetime):
                value = format_rfc3339(value)
            entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        if self.output == "json":
            return json.dumps(entry, ensure_ascii=False, default=str)
        return " ".join(f"{key}={_kv_value(value)}" for key, value in entry.items())


def _kv_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if _BARE_VALUE.fullmatch(text):
        return text
    return json.dumps(text, ensure_ascii=False)  # quoted, with newlines escaped: still one line


class RequestIdFilter(logging.Filter):
    """Stamp the current request's id on every record logged while the request runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id") and has_request_context():
            record.request_id = g.get("request_id")
        return True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time, like logging's last-resort handler."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)  # skip StreamHandler's: it would pin today's stderr

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr


def configure_logging(level: str, output: str) -> None:
    """Route every logger through one structured handler on the root logger."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        handler.addFilter(RequestIdFilter())
        root.addHandler(handler)
    handler.setFormatter(StructuredFormatter(output))
    root.setLevel(level.upper())


def init_app(app: Flask) -> None:
    """Configure logging from the app's settings and log one line per request."""
    configure_logging(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
    app.before_request(_start_request)
    app.after_request(_finish_request)


def _start_request() -> None:
    incoming = request.headers.get(REQUEST_ID_HEADER)
    g.request_id = incoming if valid_request_id(incoming) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def _finish_request(response: Response) -> Response:
    request_id = g.get("request_id") or uuid.uuid4().hex
    response.headers[REQUEST_ID_HEADER] = request_id
    if request.path not in QUIET_PATHS:
        started = g.get("request_started")
        duration_ms = round((time.perf_counter() - started) * 1000, 2) if started is not None else None
        request_log.info("request", extra={
            "request_id": request_id,
            **log_fields(method=request.method, path=request.path, status=response.status_code,
                         duration_ms=duration_ms),
        })
    return response
