"""Holding real responses to the OpenAPI document: every test's client goes through this.

`ValidatingClient` is the test client class of every test app (see conftest.py).
After each request it finds the documented operation for the matched Flask
route and fails the test when the status is not documented for it, when the
media type is not one the document lists, when a documented header is missing,
or when a JSON body does not validate against the response schema.
"""
from __future__ import annotations

import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect
from werkzeug.test import TestResponse

from app.api.openapi import document

DOCUMENT_URI = "urn:tracking:openapi"
CHECKER_KEY = "tests.openapi_checker"
DOCUMENTED_PREFIXES = ("/api/", "/healthz", "/readyz", "/internal/")


def openapi_path(rule: str) -> str:
    """`/api/metrics/jobs/<job_id>` (Flask) as `/api/metrics/jobs/{job_id}` (OpenAPI)."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def documented_rule(rule: str) -> bool:
    return rule.startswith(DOCUMENTED_PREFIXES) or rule == "/api"


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


class ResponseChecker:
    """The document of one app, with a validator per schema location, built on first use."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        with app.app_context():
            self.document = document()
        resource = Resource.from_contents(self.document, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(DOCUMENT_URI, resource)
        self.validators: dict[str, Draft202012Validator] = {}

    def validator(self, pointer: str) -> Draft202012Validator:
        if pointer not in self.validators:
            self.validators[pointer] = Draft202012Validator(
                {"$ref": f"{DOCUMENT_URI}#{pointer}"}, registry=self.registry,
                format_checker=Draft202012Validator.FORMAT_CHECKER)
        return self.validators[pointer]

    def _resolve(self, obj: dict[str, Any], pointer: str) -> tuple[dict[str, Any], str]:
        """Follow a local `$ref` (as used for shared responses) to the object and its pointer."""
        while "$ref" in obj:
            pointer = obj["$ref"].removeprefix("#")
            obj = self.document
            for token in pointer.strip("/").split("/"):
                obj = obj[token.replace("~1", "/").replace("~0", "~")]
        return obj, pointer

    def check(self, method: str, path: str, response: TestResponse) -> None:
        try:
            rule, _ = self.app.url_map.bind("localhost").match(path, method=method, return_rule=True)
        except (NotFound, MethodNotAllowed, RequestRedirect):
            if path.startswith("/api/") and response.is_json:
                self.validate_json(response, "/components/schemas/Error", f"{method} {path}")
            return
        if not documented_rule(rule.rule):
            return
        template = openapi_path(rule.rule)
        verb = "get" if method == "HEAD" else method.lower()
        operation = self.document["paths"].get(template, {}).get(verb)
        where = f"{method} {path} ({verb.upper()} {template})"
        assert operation is not None, f"{where} is served but not described in the OpenAPI document"
        status = str(response.status_code)
        assert status in operation["responses"], (
            f"{where} answered {status}, which the document does not list: {sorted(operation['responses'])}")
        spec, pointer = self._resolve(operation["responses"][status],
                                      f"/paths/{_escape(template)}/{verb}/responses/{status}")
        for header in spec.get("headers", {}):
            assert header in response.headers, f"{where} {status}: documented header {header} is missing"
        content = spec.get("content", {})
        assert response.mimetype in content, (
            f"{where} {status} is {response.mimetype}; the document lists {sorted(content)}")
        if response.mimetype == "application/json" and method != "HEAD":
            self.validate_json(response, f"{pointer}/content/{_escape(response.mimetype)}/schema", where)

    def validate_json(self, response: TestResponse, pointer: str, where: str) -> None:
        errors = sorted(self.validator(pointer).iter_errors(response.get_json()), key=lambda e: list(e.path))
        assert not errors, f"{where} {response.status_code} does not match {pointer}: " + "; ".join(
            f"{'/'.join(map(str, error.path)) or '(root)'}: {error.message}" for error in errors[:5])


class ValidatingClient(FlaskClient):
    """A test client that holds every response to the OpenAPI document."""

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        # Like a server, read the whole answer and close it (a stream holds its export slot until closed),
        # unless the test asks to read it itself.
        kwargs.setdefault("buffered", True)
        response = super().open(*args, **kwargs)
        request = response.request
        checker = self.application.extensions.get(CHECKER_KEY)
        if checker is None:
            checker = self.application.extensions[CHECKER_KEY] = ResponseChecker(self.application)
        checker.check(request.method, request.path, response)
        return response
