"""Request bodies never longer than MAX_BODY_BYTES, chunked ones included.

With a Content-Length over the limit werkzeug answers 413 before reading.
A chunked body has none: werkzeug then reads at most the limit and stops
there (its `LimitedStream.readall`), so an oversized body arrived cut short
and failed as malformed JSON, a 400. Here a body read whole checks for one
byte more than the limit and answers 413 when there is one.
"""
from __future__ import annotations

from typing import IO

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream


class _MaxLengthStream(LimitedStream):
    """A stream of at most `limit` bytes that refuses, rather than cuts, a longer one."""

    def readall(self) -> bytes:
        data = super().readall()
        if self.is_exhausted and self._stream.read(1):
            raise RequestEntityTooLarge()
        return data


class BoundedRequest(Request):
    """Flask's request, with the chunked body's length checked as strictly as a declared one."""

    @cached_property
    def stream(self) -> IO[bytes]:  # type: ignore[override]
        limit = self.max_content_length
        if self.content_length is None and limit is not None and "wsgi.input_terminated" in self.environ:
            return _MaxLengthStream(self.environ["wsgi.input"], limit, is_max=True)  # type: ignore[return-value]
        return super().stream
