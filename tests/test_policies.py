"""Every route states its policy where it is defined (app/http/policy.py), and the one gate enforces it."""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from flask import Response, stream_with_context

from app import create_app
from app.extensions import close
from app.http.policy import Access, Policy, policy

APP = Path(__file__).resolve().parent.parent / "app"


def test_every_route_of_the_url_map_declares_its_policy(app):
    undeclared = [f"{rule.rule} ({rule.endpoint})" for rule in app.url_map.iter_rules()
                  if not isinstance(getattr(app.view_functions[rule.endpoint], "policy", None), Policy)]
    assert not undeclared, undeclared


def _string_collections(path: Path) -> Iterator[tuple[int, set[str]]]:
    """Each literal set, list, tuple or dict of the module with the strings it holds (dict keys included)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.Set, ast.List, ast.Tuple)):
            items = node.elts
        elif isinstance(node, ast.Dict):
            items = [key for key in node.keys if key is not None]
        else:
            continue
        strings = {item.value for item in items if isinstance(item, ast.Constant) and isinstance(item.value, str)}
        if strings:
            yield node.lineno, strings


def test_no_module_keeps_a_table_of_endpoint_names(app):
    """A view renamed must not silently drop a budget, an access rule or a header: no policy lives in a
    collection keyed by endpoint names (url_for's single names are links, not tables)."""
    # a blueprint's endpoints are dotted; of the app's own, only `static` is not also a common word (`index`)
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules() if "." in rule.endpoint} | {"static"}
    tables = [f"{path.relative_to(APP.parent)}:{line} {sorted(strings & endpoints)}"
              for path in sorted(APP.rglob("*.py")) for line, strings in _string_collections(path)
              if strings & endpoints]
    assert not tables, tables


def test_a_streaming_route_runs_at_most_its_declared_number_at_once(app_config):
    app = create_app(app_config)

    @policy(Access.OPEN, budgets=(), csrf=False, concurrency=1)
    def stream() -> Response:
        return Response(stream_with_context(iter(["a", "b"])), mimetype="text/plain")

    app.add_url_rule("/stream-for-test", view_func=stream)
    try:
        client = app.test_client()
        first = client.get("/stream-for-test", buffered=False)
        assert first.status_code == 200
        busy = client.get("/stream-for-test")
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
        assert b"".join(first.response) == b"ab"
        first.close()  # the answer has been sent: its slot is free again
        assert client.get("/stream-for-test").get_data() == b"ab"
    finally:
        close(app)
