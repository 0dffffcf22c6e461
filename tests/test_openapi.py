"""The OpenAPI document: valid 3.1, covering every route, and a docs page that needs no network.

Every other test's responses are validated against the document by the
client in tests/openapi_check.py; these tests check the document itself.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from app import create_app
from app.api.openapi import build_document
from tests.openapi_check import documented_rule, openapi_path

IGNORED_METHODS = {"HEAD", "OPTIONS"}


def test_the_document_is_valid_openapi_3_1(app):
    document = build_document(app.extensions["tracking.runtime"].settings)
    assert document["openapi"].startswith("3.1.")
    validate(document)


def test_the_validator_would_notice_a_broken_document(app):
    document = build_document(app.extensions["tracking.runtime"].settings)
    document["paths"]["/api/events"]["get"]["parameters"][1]["in"] = "body"  # OpenAPI 2 style, gone in 3.x
    with pytest.raises(OpenAPIValidationError):
        validate(document)


def test_it_is_served_as_json(client, app):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.get_json() == build_document(app.extensions["tracking.runtime"].settings)


def test_every_route_and_method_is_described(app):
    paths = build_document(app.extensions["tracking.runtime"].settings)["paths"]
    missing = []
    for rule in app.url_map.iter_rules():
        if not documented_rule(rule.rule):
            continue
        template = openapi_path(rule.rule)
        for method in sorted((rule.methods or set()) - IGNORED_METHODS):
            if method.lower() not in paths.get(template, {}):
                missing.append(f"{method} {template}")
    assert not missing, f"routes the OpenAPI document does not describe: {missing}"


def test_every_described_operation_is_served(app):
    served = {(openapi_path(rule.rule), method.lower())
              for rule in app.url_map.iter_rules() for method in rule.methods or ()}
    stale = [f"{method.upper()} {path}" for path, item in build_document(app.extensions["tracking.runtime"].settings)["paths"].items()
             for method in item if (path, method) not in served]
    assert not stale, f"the document describes operations nobody serves: {stale}"


def test_the_limits_in_the_document_are_the_running_ones(app_config):
    app = create_app({**app_config, "LIST_MAX_LIMIT": 50})
    parameters = build_document(app.extensions["tracking.runtime"].settings)["paths"]["/api/events"]["get"]["parameters"]
    (limit,) = [p for p in parameters if p.get("name") == "limit"]
    assert limit["schema"]["maximum"] == 50


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self._in_inline_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script":
            if attributes.get("src"):
                self.urls.append(attributes["src"] or "")
            else:
                self._in_inline_script = True
        elif tag == "link" and attributes.get("href"):
            self.urls.append(attributes["href"] or "")
        for name, value in attrs:
            if name.startswith("on") or (value or "").startswith("javascript:"):
                self.inline_scripts += 1

    def handle_data(self, data: str) -> None:
        if self._in_inline_script and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_inline_script = False


def test_the_docs_page_loads_only_local_assets_and_no_inline_script(client):
    response = client.get("/api/docs")
    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy and "unsafe" not in policy
    page = response.get_data(as_text=True)
    assets = _Assets()
    assets.feed(page)
    assert assets.inline_scripts == 0
    assert len(assets.urls) == 3 and all(url.startswith("/static/") for url in assets.urls), assets.urls
    for url in assets.urls:
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.get_data()) > 0, url
        asset.close()
    assert re.search(r'data-spec-url="/api/openapi.json"', page)
    init = client.get("/static/api-docs.js")
    assert "validatorUrl: null" in init.get_data(as_text=True)  # no call to an online validator
    init.close()
