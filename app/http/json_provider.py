"""JSON responses encoded by orjson.

A page of 100 events or the answer to a 1,000-event batch spent a measurable
share of its CPU in json.dumps; orjson encodes the same documents about ten
times faster. Requests are still decoded by the standard library (see
app.core.validation), which keeps integers of any size exact.
"""
from __future__ import annotations

from typing import Any

import orjson
from flask import Response
from flask.json.provider import DefaultJSONProvider


class OrjsonProvider(DefaultJSONProvider):
    """Flask's default provider, with compact responses encoded by orjson.

    Dates and other types orjson passes on go through Flask's own `default`,
    so they serialise as before; a document orjson refuses (an integer beyond
    64 bits, a non-string key) falls back to the standard library.
    """

    sort_keys = False  # keep fields in the documented order
    _OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_APPEND_NEWLINE

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        if (self.compact is None and self._app.debug) or self.compact is False:
            return super().response(obj)  # indented for people reading it
        try:
            body = orjson.dumps(obj, default=self.default, option=self._OPTIONS)
        except TypeError:
            return super().response(obj)
        return self._app.response_class(body, mimetype=self.mimetype)
