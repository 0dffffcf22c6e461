"""Structured request logs and request ids: what is written, and what never is."""
from __future__ import annotations

import json
import logging
import re
import sys

import pytest

from app.extensions import db
from app.core.logs import StructuredFormatter, redact
from tests.helpers import post_event


@pytest.fixture
def json_logs(app_config):
    app_config["LOG_FORMAT"] = "json"


def lines(captured: str) -> list[dict]:
    return [json.loads(line) for line in captured.splitlines() if line.startswith("{")]


def request_lines(capsys) -> list[dict]:
    return [line for line in lines(capsys.readouterr().err) if line["msg"] == "request"]


def test_one_json_line_per_request_with_id_method_path_status_duration(json_logs, client, capsys):
    capsys.readouterr()
    response = client.get("/api/events?user_id=7&limit=5")
    (line,) = request_lines(capsys)
    assert line["request_id"] == response.headers["X-Request-ID"]
    assert line["method"] == "GET"
    assert line["path"] == "/api/events"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["level"] == "INFO" and line["logger"] == "app.request" and line["ts"].endswith("Z")


def test_a_valid_request_id_is_honoured_and_echoed(json_logs, client, capsys):
    capsys.readouterr()
    response = client.get("/api/events", headers={"X-Request-ID": "checkout-42:retry/1"})
    assert response.headers["X-Request-ID"] == "checkout-42:retry/1"
    assert request_lines(capsys)[0]["request_id"] == "checkout-42:retry/1"


@pytest.mark.parametrize("sent", ["x" * 129, "has space", 'quote"d', "new\nline", "", "ünïcode"])
def test_an_unsafe_request_id_is_replaced_by_a_generated_one(json_logs, client, capsys, sent):
    capsys.readouterr()
    response = client.get("/api/events", environ_base={"HTTP_X_REQUEST_ID": sent})
    generated = response.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert request_lines(capsys)[0]["request_id"] == generated


def test_every_response_gets_a_fresh_id_when_none_is_sent(client):
    ids = {client.get("/api/events?limit=1").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3


def test_lines_logged_during_a_request_carry_its_id(json_logs, app, client, capsys):
    @app.get("/log-probe")
    def log_probe():
        logging.getLogger("app.probe").warning("inside")
        return {"ok": True}

    capsys.readouterr()
    client.get("/log-probe", headers={"X-Request-ID": "abc"})
    inside = [line for line in lines(capsys.readouterr().err) if line["msg"] == "inside"]
    assert inside and inside[0]["request_id"] == "abc"


def test_probes_and_scrapes_are_not_logged(json_logs, client, capsys):
    capsys.readouterr()
    for path in ("/healthz", "/readyz", "/internal/metrics"):
        assert client.get(path).status_code == 200
    assert request_lines(capsys) == []


def test_kv_lines_are_one_line_of_key_value_pairs(client, capsys):
    capsys.readouterr()
    client.get("/api/events", headers={"X-Request-ID": "kv-1"})
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "msg=request" in line]
    assert re.fullmatch(r'ts=\S+Z level=INFO logger=app.request msg=request request_id=kv-1 method=GET '
                        r'path=/api/events status=200 duration_ms=[0-9.]+', line)


def test_headers_bodies_and_query_strings_are_never_logged(json_logs, client, capsys):
    capsys.readouterr()
    post_event(client, metadata={"card": "4111-SECRET-BODY"})
    client.get("/api/events?meta.token=SECRET-QUERY", headers={"Authorization": "Bearer SECRET-TOKEN",
                                                                "Cookie": "session=SECRET-COOKIE"})
    client.post("/api/event", data='{"user_id": 1, "action": "x", "metadata": {"pw": "SECRET-BAD"}, "nope": 1}',
                content_type="application/json")
    output = capsys.readouterr().err
    assert "SECRET" not in output
    assert len(lines(output)) >= 3


def test_a_database_error_never_logs_the_statement_parameters(app):
    with app.app_context():
        assert db.engine.hide_parameters


def make_record(message: str, *args: object, **fields: object) -> logging.LogRecord:
    record = logging.LogRecord("app.test", logging.ERROR, __file__, 1, message, args, None)
    record.fields = fields
    return record


@pytest.mark.parametrize(("text", "expected"), [
    ("connect to postgresql://tracking:s3cr3t@db:5432/tracking failed",
     "connect to postgresql://tracking:***@db:5432/tracking failed"),
    ("redis://:hunter2@redis:6379/0", "redis://:***@redis:6379/0"),
    ("host=db user=tracking password=s3cr3t dbname=x", "host=db user=tracking password=*** dbname=x"),
    ("postgresql://tracking@db/tracking", "postgresql://tracking@db/tracking"),
])
def test_credentials_are_masked_wherever_they_appear(text, expected):
    assert redact(text) == expected
    formatted = StructuredFormatter("json").format(make_record("%s", text, url=text))
    assert json.loads(formatted)["msg"] == expected
    assert json.loads(formatted)["url"] == expected


def test_kv_quotes_values_with_spaces_and_keeps_exceptions_on_one_line():
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        record = make_record("job failed", error="Runtime Error", rows=3, ok=True, missing=None)
        record.exc_info = sys.exc_info()
    line = StructuredFormatter("kv").format(record)
    assert "\n" not in line
    assert 'msg="job failed" error="Runtime Error" rows=3 ok=true missing=null exc="Traceback' in line
