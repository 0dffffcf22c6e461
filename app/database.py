"""Where statements go: writes to the primary, list queries to the read engine.

Queries call `read_connection()`; when `DATABASE_READ_URL` names a replica the
list endpoints move there without any change to the service layer.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

from .extensions import db


def read_engine() -> Engine:
    return db.engines.get("read") or db.engine


@contextmanager
def read_connection() -> Iterator[Connection]:
    """A short read-only unit of work on the read engine."""
    with read_engine().connect() as connection:
        yield connection
        connection.rollback()
