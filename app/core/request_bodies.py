"""The API's request bodies, declared once.

msgspec decodes a body straight into these types in C, checking types, bounds
and unknown fields on the way; the OpenAPI document generates its request
schemas from the same declarations, and `app.core.declarations` words what
msgspec refuses as our envelope's field and message (the `noun` in a field's
`extra` is what the message says the field must be). What a type cannot say (no
NUL, not blank, nesting, encoded size, clock skew, retention) is checked in
`app.core.validation` after decoding.
"""
from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from msgspec import Meta

MAX_BIGINT = 2**63 - 1
MAX_ACTION_LENGTH = 255
MAX_BATCH = 1000
UUID_EXAMPLE = "0b9f6c5e-3c1a-4d8e-9a57-1f2e3d4c5b6a"

Action = Annotated[str, Meta(min_length=1, max_length=MAX_ACTION_LENGTH, description="Not blank.")]
Timestamp = Annotated[str, Meta(
    description="RFC 3339 with an offset (`Z` or `+02:00`).", examples=["2025-10-23T13:07:00.000000Z"],
    extra_json_schema={"format": "date-time"}, extra={"noun": "an RFC 3339 timestamp string"})]


class NewEvent(msgspec.Struct, forbid_unknown_fields=True):
    """What `POST /api/event` takes, and each item of a batch."""

    user_id: Annotated[int, Meta(ge=1, le=MAX_BIGINT, description="A JSON integer; strings, floats and booleans "
                                 "are refused.", extra={"noun": "a positive integer"})]
    action: Action
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    occurred_at: Timestamp | None = None
    id: Annotated[uuid.UUID, Meta(examples=[UUID_EXAMPLE], description="Your id for the event, unique per user: "
                                  "a retry with the same id and user_id is stored once.")] | None = None


class EventBatch(msgspec.Struct, forbid_unknown_fields=True):
    """What `POST /api/events/batch` takes: all or none of its events are stored."""

    events: Annotated[list[NewEvent], Meta(min_length=1, max_length=MAX_BATCH,
                                           extra={"noun": "a non-empty array of events"})]


class CalculationRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The optional body of `POST /api/metrics`: the range to recompute, or nothing for every pending window."""

    from_: Timestamp | None = msgspec.field(default=None, name="from")
    till: Timestamp | None = None


def schemas(ref_template: str) -> dict[str, dict[str, Any]]:
    """JSON Schemas of the request bodies, by name, as OpenAPI components."""
    _, components = msgspec.json.schema_components([NewEvent, EventBatch, CalculationRequest],
                                                   ref_template=ref_template)
    return components
