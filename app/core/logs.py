"""Structured logs: one line per record, as key=value or JSON, with secrets masked.

`configure_logging` installs one handler on the root logger (once per process;
a later call only changes its format and level), so our modules, RQ and
gunicorn's error log (see gunicorn.conf.py) all write the same kind of line.
Only what is named is logged: never headers, bodies or query strings;
credentials inside URLs or `password=` parameters are masked in any message.
"""
from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

from .times import format_rfc3339

_URL_CREDENTIALS = re.compile(r"(?P<keep>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@")
_PASSWORD_PARAM = re.compile(r"(?P<keep>\bpassword\s*=\s*)(?:'[^']*'|\S+)", re.IGNORECASE)
_BARE_VALUE = re.compile(r"[^\s\"'=\\\x00-\x1f\x7f]+")


def log_fields(**fields: Any) -> dict[str, Any]:
    """The `extra=` of a structured line: `log.info("job finished", extra=log_fields(job_id=...))`."""
    return {"fields": fields}


def redact(text: str) -> str:
    """Mask passwords in URLs (`scheme://user:***@host`) and in `password=...` parameters.

    Text with no `@` holds no URL credentials and text with no `=` no parameter: most of what is
    logged (every request line's method and path) skips both regular expressions.
    """
    if "@" in text:
        text = _URL_CREDENTIALS.sub(r"\g<keep>***@", text)
    if "=" in text:
        text = _PASSWORD_PARAM.sub(r"\g<keep>***", text)
    return text


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


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is at the time, like logging's last-resort handler."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)  # skip StreamHandler's: it would pin today's stderr

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr


def configure_logging(level: str, output: str) -> logging.Handler:
    """Route every logger through one structured handler on the root logger; returns that handler."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        root.addHandler(handler)
    handler.setFormatter(StructuredFormatter(output))
    root.setLevel(level.upper())
    # Our lines never show where a call was made, or its thread or process: the Logging HOWTO's
    # "Optimization" switches spare every record those lookups.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    return handler
