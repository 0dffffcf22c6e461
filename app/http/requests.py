"""The service's request class: Flask's, with its start, its id, its route's policy, and a body bounded even
when chunked.

`started` and `id` belong to the request itself, so no hook has to run first
to stamp them: the request log, Prometheus and any line logged while the
request runs read the same values, whatever order their hooks run in. The
policy gate notes the route's policy on it, for the hooks that answer by it.

With a Content-Length over MAX_BODY_BYTES werkzeug answers 413 before
reading. A chunked body has none: werkzeug then reads at most the limit and
stops there (its `LimitedStream.readall`), so an oversized body would arrive
cut short and fail as malformed JSON. Here a body read whole checks for one
byte more than the limit and answers 413 when there is one.
"""
from __future__ import annotations

import os
import re
import time
from typing import IO, Any

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_PATTERN = r"[A-Za-z0-9._:/+=@-]{1,128}"

_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)


def valid_request_id(value: str | None) -> bool:
    """Whether a client's request id is safe to echo and log: 1-128 characters, no spaces or quotes."""
    return value is not None and _REQUEST_ID.fullmatch(value) is not None


def new_request_id() -> str:
    """32 random hex digits, like a UUID4's hex, without building a UUID object."""
    return os.urandom(16).hex()


class _MaxLengthStream(LimitedStream):
    """A stream of at most `limit` bytes that refuses, rather than cuts, a longer one."""

    def readall(self) -> bytes:
        data = super().readall()
        if self.is_exhausted and self._stream.read(1):
            raise RequestEntityTooLarge()
        return data


class ServiceRequest(Request):
    """Flask's request, with `started`, `id`, and the chunked body's length checked as strictly as a declared one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.started = time.perf_counter()
        self.policy: Any = None  # its route's policy, once the policy gate has looked it up

    @cached_property
    def id(self) -> str:
        """The client's `X-Request-ID` when it is safe to echo and log, else a new one."""
        incoming = self.headers.get(REQUEST_ID_HEADER)
        return incoming if valid_request_id(incoming) else new_request_id()

    @cached_property
    def stream(self) -> IO[bytes]:  # type: ignore[override]
        limit = self.max_content_length
        if self.content_length is None and limit is not None and "wsgi.input_terminated" in self.environ:
            return _MaxLengthStream(self.environ["wsgi.input"], limit, is_max=True)  # type: ignore[return-value]
        return super().stream
