"""Reading API requests: the JSON body and the list parameters, checked by the core input rules."""
from __future__ import annotations

from datetime import datetime

from flask import request

from ..core.list_parameters import ListQuery, Parameters, parse_list_query
from ..core.validation import InputBounds
from ..extensions import settings
from ..http.errors import ApiError

# Content types whose body is read as JSON: JSON itself, none at all, and plain text.
JSON_READABLE_TYPES = frozenset({"application/json", "", "text/plain"})


def json_body(*, optional: bool = False) -> bytes | None:
    """The request's JSON document, undecoded (the input rules decode it into its type); 415 for a
    declared content type that is not JSON.

    A body without a Content-Type, or sent as `text/plain`, is read as JSON too:
    the original service read any body as JSON, and its clients (the HTTPie
    collection's create request, `fetch` with a string body) send one of those.
    With `optional`, an empty body reads as None (`POST /api/metrics` is called
    with no body by the original's clients).
    """
    raw = request.get_data(cache=False)
    if request.mimetype not in JSON_READABLE_TYPES:
        raise ApiError("send the body as application/json", status=415, code="unsupported_media_type")
    if optional and not raw.strip():
        return None
    return raw


def input_bounds() -> InputBounds:
    return settings().input_bounds


def list_query(kind: type[Parameters], now: datetime) -> ListQuery[Parameters]:
    """The query string as the list parameters `kind` declares, with this app's page sizes and filter limit (and
    its range in the span `now` places)."""
    config = settings()
    return parse_list_query(request.args.to_dict(flat=False), kind, now=now, default_limit=config.list_default_limit,
                            max_limit=config.list_max_limit, max_metadata_filters=config.list_max_metadata_filters)
