"""Every route states its policy where it is defined (app/http/policy.py), and the one gate enforces it."""
from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from flask import Response, stream_with_context

from app import create_app
from app.extensions import close
from app.http.policy import Access, Concurrency, Policy, policy

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


def test_a_long_running_route_runs_at_most_its_declared_number_at_once_in_total_and_per_client(app_config):
    app = create_app(app_config)

    @policy(Access.OPEN, budgets=(), csrf=False,
            concurrency=Concurrency("test", total=lambda config: 2, per_client=lambda config: 1))
    def stream() -> Response:
        return Response(stream_with_context(iter(["a", "b"])), mimetype="text/plain")

    app.add_url_rule("/stream-for-test", view_func=stream)

    def client_at(address: str):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = address
        return client

    try:
        first = client_at("10.9.0.1").get("/stream-for-test", buffered=False)
        assert first.status_code == 200
        again = client_at("10.9.0.1").get("/stream-for-test")  # the same client: its own bound first
        assert again.status_code == 429 and again.headers["Retry-After"] == "5"
        second = client_at("10.9.0.2").get("/stream-for-test", buffered=False)
        assert second.status_code == 200
        busy = client_at("10.9.0.3").get("/stream-for-test")  # another client, but the process is full
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "5"
        second.close()  # (streams close in the reverse order of their request contexts)
        assert b"".join(first.response) == b"ab"
        first.close()  # the answers have been sent: their slots are free again
        assert client_at("10.9.0.1").get("/stream-for-test").get_data() == b"ab"
        assert client_at("10.9.0.3").get("/stream-for-test").get_data() == b"ab"
    finally:
        close(app)


def test_exports_are_bounded_below_the_threads_so_writes_always_find_one(app_config):
    """The export routes declare LONG_READS: with the defaults (4 threads: 2 exports, 1 per client), a client
    holding exports open still leaves writes and other clients their threads."""
    app = create_app({**app_config, "API_TOKENS_FULL": "full-a,full-b,full-c", "ACCESS_CONTROL": "off"})
    try:
        def as_token(token: str):
            client = app.test_client()
            client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
            return client

        held = [as_token("full-a").get("/api/events/export", buffered=False)]
        assert held[0].status_code == 200
        assert as_token("full-a").get("/api/events/export").status_code == 429
        held.append(as_token("full-b").get("/api/events/export", buffered=False))
        assert held[1].status_code == 200
        assert as_token("full-c").get("/api/events/export").status_code == 503
        assert as_token("full-c").get("/events/export").status_code == 503  # the dashboard's shares the bound
        assert as_token("full-c").post("/api/event", json={"user_id": 1, "action": "a"}).status_code == 201
        for response in reversed(held):
            response.close()
        assert as_token("full-c").get("/api/events/export").status_code == 200
    finally:
        close(app)
