"""The OpenAPI 3.1 description of every HTTP endpoint, served at `/api/openapi.json`,
and a human docs page at `/api/docs` (Swagger UI, vendored under static/vendor, so
it works offline).

Both routes join the api blueprint when this module is imported (endpoints
`api.openapi_document` and `api.docs`). The document is built in Python from
the app's settings, so the limits it states (page sizes, body size) are the
ones the running app enforces. The test suite checks it against the routes
Flask knows and validates every response the tests see against it
(tests/openapi_check.py).
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

import msgspec
from flask import current_app, jsonify, render_template
from werkzeug.wrappers import Response

from ..core.list_parameters import EventExportParameters, EventListParameters, ListParameters, \
    MetricListParameters
from ..core.settings import Settings
from ..core.request_bodies import schemas as request_body_schemas
from ..core.validation import INSTANT_SPAN, MAX_METADATA_DEPTH, MAX_QUERY_VALUE_LENGTH
from ..extensions import settings as app_settings
from ..http.errors import Error
from ..http.policy import Access, policy
from ..http.requests import REQUEST_ID_PATTERN
from . import bp
from .representations import ANSWERS

EXTENSION_KEY = "tracking.openapi"

Schema = dict[str, Any]


def document() -> Schema:
    """The current app's OpenAPI document, built once per app."""
    doc = current_app.extensions.get(EXTENSION_KEY)
    if doc is None:
        doc = build_document(app_settings())
        current_app.extensions[EXTENSION_KEY] = doc
    return doc


@bp.get("/openapi.json")
@policy(Access.OPEN, budgets=(), csrf=False, cacheable=True)
def openapi_document() -> Response:
    """The document, for tools (client generators, Swagger UI, contract tests)."""
    return jsonify(document())


@bp.get("/docs")
@policy(Access.OPEN, budgets=(), csrf=False, cacheable=True)
def docs() -> Response:
    """Swagger UI over /api/openapi.json; its scripts are files under /static, no inline code,
    so it renders under the site's Content-Security-Policy as it is."""
    return current_app.make_response(render_template("openapi/docs.html"))


_REF_TEMPLATE = "#/components/schemas/{name}"


def _ref(name: str) -> Schema:
    return {"$ref": _REF_TEMPLATE.format(name=name)}


def _json(description: str, schema: Schema, headers: dict[str, Any] | None = None) -> Schema:
    return {
        "description": description,
        "headers": {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}, **(headers or {})},
        "content": {"application/json": {"schema": schema}},
    }


def _content(description: str, media_type: str, schema: Schema) -> Schema:
    return {
        "description": description,
        "headers": {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}},
        "content": {media_type: {"schema": schema}},
    }


def _errors(*statuses: int) -> dict[str, Schema]:
    return {str(status): {"$ref": f"#/components/responses/{_ERROR_RESPONSES[status]}"} for status in statuses}


_ERROR_RESPONSES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    429: "TooManyRequests",
    503: "Unavailable",
}
# Who may call what once access control is on: ingest tokens only record events (no 403 there),
# and recording, reading and recalculating are rate-limited per client.
_FULL_TOKEN = (401, 403)
_ANY_TOKEN = (401,)
_RATE_LIMITED = (429,)
_CROSS_SITE = (403,)  # in open mode, a state change sent from another site's page
_OPEN: list[Schema] = []


def _operation(summary: str, tag: str, responses: dict[str, Schema], *, description: str = "",
               parameters: list[Schema] | None = None, body: Schema | None = None,
               operation_id: str, security: list[Schema] | None = None) -> Schema:
    operation: Schema = {
        "operationId": operation_id,
        "tags": [tag],
        "summary": summary,
        "parameters": [{"$ref": "#/components/parameters/RequestId"}, *(parameters or [])],
        "responses": responses,
    }
    if description:
        operation["description"] = description
    if body is not None:
        operation["requestBody"] = body
    if security is not None:
        operation["security"] = security
    return operation


def _query_parameters(kind: type[ListParameters], settings: Settings) -> list[Schema]:
    """The query parameters that `kind` declares, with this configuration's page sizes."""
    _, components = msgspec.json.schema_components([kind], ref_template=_REF_TEMPLATE)
    parameters = []
    for name, schema in components[kind.__name__]["properties"].items():
        if "anyOf" in schema:  # an optional parameter is left out, never null
            schema = {**next(s for s in schema["anyOf"] if s != {"type": "null"}),
                      **{key: value for key, value in schema.items() if key not in ("anyOf", "default")}}
        description = schema.pop("description")
        if name == "limit":
            schema.update(minimum=1, maximum=settings.list_max_limit, default=settings.list_default_limit)
        parameters.append({"name": name, "in": "query", "description": description, "schema": schema})
    if kind.metadata_filters:
        parameters.append(_META_PARAMETER)
    return parameters


# Free-form names: an exploded form-style object is how OpenAPI says `meta.page=/home&meta.n=5`.
_META_PARAMETER = {
    "name": "meta", "in": "query", "style": "form", "explode": True,
    "description": "Metadata filters, any number, each `meta.KEY=VALUE`: events whose metadata holds that key with "
                   "that value (`meta.page=/home`; `meta.n=5` also matches the JSON number 5, `meta.ok=true` the "
                   "boolean). The key must not be empty; neither may contain NUL.",
    "schema": {"type": "object", "propertyNames": {"pattern": r"^meta\..+$", "maxLength": MAX_QUERY_VALUE_LENGTH},
               "additionalProperties": {"type": "string", "minLength": 1, "maxLength": MAX_QUERY_VALUE_LENGTH}}}


def _meta_filter(settings: Settings) -> str:
    return ("`meta.KEY=VALUE` keeps events whose metadata holds that key with that value (see the `meta` "
            f"parameter); at most {settings.list_max_metadata_filters} such filters per request (more: 400 "
            "`too_many_filters`). Unknown, repeated or empty parameters are a 400 naming the parameter.")


def _request_schemas(settings: Settings) -> dict[str, Schema]:
    """The request bodies' schemas, generated from their declarations, with the limits that are settings."""
    schemas = request_body_schemas(ref_template=_REF_TEMPLATE)
    event = schemas["NewEvent"]["properties"]
    event["metadata"]["description"] = (f"Any JSON object of at most {settings.metadata_max_bytes} bytes encoded, "
                                        f"nested at most {MAX_METADATA_DEPTH} levels; no NUL characters.")
    event["occurred_at"]["description"] = (
        f"When it happened (default: now); at most {settings.event_future_tolerance_seconds} s in the future and "
        f"at most {settings.event_max_age_days} days in the past"
        + (f" (and at most {settings.events_retention_days} days old: EVENTS_RETENTION_DAYS)."
           if settings.events_retention_days else "."))
    schemas["NewEvent"]["examples"] = [{"user_id": 321, "action": "test_action",
                                        "metadata": {"page": "/hello/world"}}]
    schemas["CalculationRequest"]["description"] += (
        f" Give both or neither; `till` may be at most {settings.metrics_max_range_days} days after `from`, and "
        f"each is {INSTANT_SPAN}.")
    return schemas


def _declared_schemas() -> dict[str, Schema]:
    """The answers' schemas (and the error envelope's), generated from their declarations."""
    _, components = msgspec.json.schema_components([*ANSWERS, Error], ref_template=_REF_TEMPLATE)
    return components


def _schemas(settings: Settings) -> dict[str, Schema]:
    return {
        **_request_schemas(settings),
        **_declared_schemas(),
        "Health": {
            "type": "object",
            "required": ["status"],
            "additionalProperties": False,
            "properties": {"status": {"const": "ok"}},
        },
        "Check": {
            "type": "object",
            "required": ["status"],
            "additionalProperties": False,
            "properties": {"status": {"enum": ["ok", "fail", "skipped"]},
                           "error": {"type": "string"}, "revision": {"type": "string"}},
        },
        "ReplicaCheck": {
            "type": "object",
            "required": ["status", "reads"],
            "additionalProperties": False,
            "description": "Present when DATABASE_READ_URL is set. `degraded` (the replica is down or further "
                           "behind than DATABASE_READ_MAX_LAG_SECONDS) fails nothing: reads use the primary.",
            "properties": {"status": {"enum": ["ok", "degraded"]}, "reads": {"enum": ["replica", "primary"]},
                           "lag_seconds": {"type": ["number", "null"]}, "error": {"type": ["string", "null"]}},
        },
        "Readiness": {
            "type": "object",
            "required": ["status", "checks"],
            "additionalProperties": False,
            "properties": {
                "status": {"enum": ["ready", "unavailable"]},
                "failed": {"type": "array", "items": {"enum": ["postgres", "migrations", "redis"]}},
                "checks": {"type": "object", "required": ["postgres", "migrations", "redis"],
                           "additionalProperties": False,
                           "properties": {**{name: _ref("Check") for name in ("postgres", "migrations", "redis")},
                                          "replica": _ref("ReplicaCheck")}},
            },
        },
    }


def _error_response(description: str, headers: dict[str, Any] | None = None) -> Schema:
    return _json(description, _ref("Error"), headers)


def build_document(settings: Settings) -> Schema:
    """The OpenAPI 3.1 document, with the limits of this configuration."""
    try:
        api_version = version("tracking-service")
    except PackageNotFoundError:
        api_version = "0.0.0"
    event_body = {"required": True, "content": {"application/json": {"schema": _ref("NewEvent")}}}
    calculation_body = {"required": False, "description": "Optional; an empty body computes every pending window.",
                        "content": {"application/json": {"schema": _ref("CalculationRequest")}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tracking service",
            "version": api_version,
            "description": "Events in, per-user activity metrics per time window out. All times are RFC 3339 "
                           "with an explicit offset and are returned in UTC; ranges are half-open `[from, till)`. "
                           "Every response carries `X-Request-ID` (yours if you sent a valid one). Events carry "
                           "the original service's field names `uuid` and `occured_at` beside `id` and "
                           "`occurred_at`. Browser pages on the origins of `CORS_ALLOWED_ORIGINS` may call it "
                           "(CORS, credentials allowed).",
        },
        "security": [{"bearerAuth": []}],
        "tags": [
            {"name": "events", "description": "Recording and listing events."},
            {"name": "metrics", "description": "Activity metrics and their calculation."},
            {"name": "operations", "description": "Probes, metrics for Prometheus, this description."},
        ],
        "paths": {
            "/api/event": {"post": _operation(
                "Record one event", "events", operation_id="createEvent", body=event_body,
                description="201 with the stored event; 200 with the stored event when an event with the same "
                            "`id` was stored before (a retry); 409 when that id was stored with other content.",
                responses={"201": _json("Stored.", _ref("Event")),
                           "200": _json("Already stored by an earlier request with this id.", _ref("Event")),
                           **_errors(400, *_ANY_TOKEN, *_CROSS_SITE, 409, 413, 415, *_RATE_LIMITED, 503)})},
            "/api/events/batch": {"post": _operation(
                "Record up to 1,000 events, all or none", "events", operation_id="createEventsBatch",
                body={"required": True, "content": {"application/json": {"schema": _ref("EventBatch")}}},
                description="Any invalid item rejects the whole batch with one entry per bad item in "
                            "`error.details`; ids stored before count as duplicates.",
                responses={"200": _json("Stored (or known) events, in request order.", _ref("BatchResult")),
                           **_errors(400, *_ANY_TOKEN, *_CROSS_SITE, 409, 413, 415, *_RATE_LIMITED, 503)})},
            "/api/events": {"get": _operation(
                "List events", "events", operation_id="listEvents",
                parameters=_query_parameters(EventListParameters, settings),
                description="Events in time order, one keyset page at a time. " + _meta_filter(settings),
                responses={"200": _json("One page of events.", _ref("EventPage")),
                           **_errors(400, *_FULL_TOKEN, *_RATE_LIMITED, 503)})},
            "/api/events/export": {"get": _operation(
                "Export events as CSV", "events", operation_id="exportEvents",
                parameters=_query_parameters(EventExportParameters, settings),
                description="Every event `GET /api/events` would list, with the same filters, as one CSV file "
                            "(columns id, user_id, action, occurred_at, received_at, metadata as JSON), "
                            "streamed; there are no pages, so `limit` and `cursor` are refused. "
                            + _meta_filter(settings),
                responses={"200": _content("CSV with a header row.", "text/csv", {"type": "string"}),
                           **_errors(400, *_FULL_TOKEN, *_RATE_LIMITED, 503)})},
            "/api/metrics": {
                "get": _operation(
                    "List metrics", "metrics", operation_id="listMetrics",
                    parameters=_query_parameters(MetricListParameters, settings),
                    description="The stored, final metrics of closed windows whose start lies in `[from, till)`, "
                                "ordered by window, then user. With `include_open=true` the answer also holds "
                                "`open_windows`, apart from the paged list.",
                    responses={"200": _json("One page of metrics.", _ref("MetricPage")),
                               **_errors(400, *_FULL_TOKEN, *_RATE_LIMITED, 503)}),
                "post": _operation(
                    "Calculate metrics now", "metrics", operation_id="triggerCalculation", body=calculation_body,
                    description="Queues a calculation and answers with its job. While a calculation for the same "
                                "range is queued or running, that job is returned instead of a new one.",
                    responses={"202": _json("Queued (or already queued).", _ref("JobEnvelope")),
                               **_errors(400, *_FULL_TOKEN, 413, 415, *_RATE_LIMITED, 503)}),
            },
            "/api/metrics/jobs/{job_id}": {"get": _operation(
                "Follow a calculation job", "metrics", operation_id="getCalculationJob",
                parameters=[{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                responses={"200": _json("The job: queued, started, then finished (with its summary) or failed.",
                                        _ref("JobEnvelope")),
                           **_errors(*_FULL_TOKEN, 404, 503)})},
            "/api/openapi.json": {"get": _operation(
                "This document", "operations", operation_id="getOpenApi", security=_OPEN,
                responses={"200": _json("The OpenAPI 3.1 document.", {"type": "object"})})},
            "/api/docs": {"get": _operation(
                "Human-readable API docs", "operations", operation_id="getDocs", security=_OPEN,
                responses={"200": _content("Swagger UI over this document; works offline.", "text/html",
                                           {"type": "string"})})},
            "/healthz": {"get": _operation(
                "Liveness", "operations", operation_id="healthz", security=_OPEN,
                description="200 while the process serves requests; consults no dependency.",
                responses={"200": _json("Alive.", _ref("Health"))})},
            "/readyz": {"get": _operation(
                "Readiness", "operations", operation_id="readyz", security=_OPEN,
                description="200 when PostgreSQL answers, its schema is at the migrations' head and Redis "
                            "answers; else 503 naming what failed. Answers within READYZ_TIMEOUT_SECONDS.",
                responses={"200": _json("Ready.", _ref("Readiness")),
                           "503": _json("Not ready; `failed` names the checks that failed.", _ref("Readiness"))})},
            "/internal/metrics": {"get": _operation(
                "Operational metrics for Prometheus", "operations", operation_id="prometheusMetrics", security=_OPEN,
                description="Prometheus text exposition: requests, latency, ingestion, calculation runs, queue "
                            "depth. Not the user-facing `/api/metrics`. With METRICS_TOKEN set, send it as "
                            "`Authorization: Bearer <token>`; without one it is served only while access control "
                            "is off. The compose proxy does not route `/internal/`.",
                responses={"200": {
                    "description": "Prometheus text format, or OpenMetrics when the scraper asks for it.",
                    "headers": {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}},
                    "content": {"text/plain": {"schema": {"type": "string"}},
                                "application/openmetrics-text": {"schema": {"type": "string"}}}},
                           "401": {"description": "METRICS_TOKEN is set and the request did not bear it.",
                                   "headers": {"WWW-Authenticate": {"$ref": "#/components/headers/WwwAuthenticate"}},
                                   "content": {"text/plain": {"schema": {"type": "string"}}}},
                           "404": {"description": "Not served: access control is on and METRICS_TOKEN is not set.",
                                   "content": {"text/plain": {"schema": {"type": "string"}}}}})},
        },
        "components": {
            "schemas": _schemas(settings),
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": "An API token, needed once access control is on (in production, or whenever a "
                               "token is configured). Ingest tokens may only record events; full tokens may call "
                               "everything."}},
            "parameters": {"RequestId": {
                "name": "X-Request-ID", "in": "header", "required": False,
                "description": "Your id for this request, echoed in the response and written in the logs; "
                               "one is generated when absent or not 1-128 safe characters.",
                "schema": {"type": "string", "pattern": f"^{REQUEST_ID_PATTERN}$"}}},
            "headers": {
                "RequestId": {"description": "The request's id, as sent or generated.",
                              "schema": {"type": "string", "pattern": f"^{REQUEST_ID_PATTERN}$"}},
                "RetryAfter": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}},
                "WwwAuthenticate": {"description": "How to authenticate: `Bearer`.", "schema": {"type": "string"}},
            },
            "responses": {
                "BadRequest": _error_response("Malformed JSON or an invalid field or parameter (named in "
                                              "`error.field`)."),
                "Unauthorized": _error_response("No valid API token was sent.",
                                                {"WWW-Authenticate": {"$ref": "#/components/headers/WwwAuthenticate"}}),
                "Forbidden": _error_response("The token may only record events, or (access control off) a page of "
                                             "another site sent this state change (`cross_site`)."),
                "TooManyRequests": _error_response("This client's request budget is spent; retry after the delay.",
                                                   {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}),
                "NotFound": _error_response("No such resource."),
                "Conflict": _error_response("A client id was reused for different content."),
                "PayloadTooLarge": _error_response(f"Body larger than {settings.max_body_bytes} bytes."),
                "UnsupportedMediaType": _error_response("The body is declared as something other than JSON. "
                                                        "`application/json` is expected; a body with no "
                                                        "Content-Type or `text/plain` is read as JSON too."),
                "Unavailable": _error_response("PostgreSQL or Redis is unreachable; retry later.",
                                               {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}),
            },
        },
    }
