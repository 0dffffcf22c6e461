"""JSON responses encoded by msgspec, in C.

The API's answers are msgspec Structs (`app.api.representations`), which
msgspec encodes straight from their fields, without building a dict first;
plain dicts and lists (health, the OpenAPI document) are encoded by it too.
Integers of any size stay exact (metadata can hold 2**70). Requests are
decoded by `app.core.validation`, not by this provider.
"""
from __future__ import annotations

from typing import Any

import msgspec
from flask import Response
from flask.json.provider import DefaultJSONProvider


class MsgspecProvider(DefaultJSONProvider):
    """Flask's default provider, with compact responses encoded by msgspec (Structs included).

    A value msgspec has no encoding for goes through Flask's own `default`, so
    it serialises as it would in Flask; in debug mode answers are indented for
    people reading them.
    """

    sort_keys = False  # keep fields in the documented order

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self._encoder = msgspec.json.Encoder(enc_hook=self.default)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        body = self._encoder.encode(obj)
        if (self.compact is None and self._app.debug) or self.compact is False:
            body = msgspec.json.format(body, indent=2)
        return self._app.response_class(body + b"\n", mimetype=self.mimetype)
