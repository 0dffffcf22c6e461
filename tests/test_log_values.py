"""How each kind of value reads in a log line, in both formats: what an operator greps for."""
from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timedelta, timezone

from app.core.logs import StructuredFormatter, configure_logging, log_fields

WHEN = datetime(2025, 10, 23, 15, 7, tzinfo=timezone(timedelta(hours=2)))
ID = uuid.UUID("0b9f6c5e-3c1a-4d8e-9a57-1f2e3d4c5b6a")


def record(**fields: object) -> logging.LogRecord:
    entry = logging.LogRecord("app.test", logging.INFO, __file__, 1, "café ouvert", (), None)
    entry.__dict__.update(log_fields(**fields))
    return entry


def test_kv_values_of_every_kind():
    line = StructuredFormatter("kv").format(record(
        when=WHEN, ok=True, failed=False, missing=None, rows=3, share=0.5, where="Zürich",
        windows={"from": "a b", "n": [1], "job": ID, "où": "ici"}))
    assert line.split(" ", 1)[1] == (
        'level=INFO logger=app.test msg="café ouvert" when=2025-10-23T13:07:00.000000Z ok=true failed=false '
        'missing=null rows=3 share=0.5 where=Zürich '
        'windows="{\\"from\\": \\"a b\\", \\"n\\": [1], \\"job\\": \\"0b9f6c5e-3c1a-4d8e-9a57-1f2e3d4c5b6a\\", '
        '\\"où\\": \\"ici\\"}"')


def test_json_values_of_every_kind():
    line = StructuredFormatter("json").format(record(when=WHEN, failed=False, job=ID, where="Zürich"))
    assert "café ouvert" in line and "Zürich" in line, "non-ASCII text is written as it is, not escaped"
    entry = json.loads(line)
    assert (entry["msg"], entry["when"], entry["failed"], entry["job"], entry["where"]) == (
        "café ouvert", "2025-10-23T13:07:00.000000Z", False, str(ID), "Zürich")


def test_the_default_format_is_key_value():
    assert StructuredFormatter().format(record(rows=1)).endswith('msg="café ouvert" rows=1')


def test_logging_is_configured_once_and_follows_whatever_stderr_is(capsys):
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    for handler in saved:
        root.removeHandler(handler)
    try:
        handler = configure_logging("info", "kv")
        assert configure_logging("debug", "json") is handler and root.handlers == [handler]
        assert root.level == logging.DEBUG
        logging.getLogger("app.test").debug("written where stderr is now")
        assert json.loads(capsys.readouterr().err.splitlines()[-1])["msg"] == "written where stderr is now"
    finally:
        root.handlers[:] = saved
        root.setLevel(level)
