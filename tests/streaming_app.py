"""A WSGI app that streams 200 chunks, 10 ms apart, behind the service's front; `/count` says how far it got.

tests/test_web_server.py serves it with granian to see that the front stops a stream whose client left.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from app.serving.front import Front

CHUNKS = 200
produced = {"chunks": 0}


def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
    start_response("200 OK", [("content-type", "text/plain")])
    if environ["PATH_INFO"] == "/count":
        return [str(produced["chunks"]).encode()]

    def chunks() -> Iterator[bytes]:
        for _ in range(CHUNKS):
            produced["chunks"] += 1
            yield b"x" * 65536
            time.sleep(0.01)
    return chunks()


front = Front(wsgi, threads=2, body_timeout=5, max_body_bytes=1024)
