"""Keyset pagination: opaque cursors naming the (time, tie-breaker) of a page's last row, and the page query."""
from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..core.database import Database
from ..core.errors import ValidationError
from ..core.times import format_rfc3339, parse_rfc3339


def encode_cursor(moment: datetime, key: object) -> str:
    raw = f"{format_rfc3339(moment)}|{key}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> tuple[datetime, str]:
    """The position a cursor names; a 400 naming `cursor` for anything we did not issue."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        moment, separator, key = raw.partition("|")
        if not separator:
            raise ValueError("no separator")
        return parse_rfc3339(moment), key
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationError("is not a cursor returned by this API", field="cursor") from None


def keyset_page(database: Database, statement: sa.Select[Any], key: tuple[sa.ColumnElement[Any], sa.ColumnElement[Any]],
                after: tuple[Any, Any] | None, limit: int, *,
                descending: bool = False) -> tuple[list[sa.Row[Any]], sa.Row[Any] | None]:
    """One page of `statement` ordered by `key`, starting after the `after` position.

    Reads one row more than the page to know whether another page follows;
    returns the page and its last row when one does (the next cursor's position).
    """
    position = sa.tuple_(*key)
    if after is not None:
        statement = statement.where(position < after if descending else position > after)
    order = [column.desc() for column in key] if descending else list(key)
    with database.read() as connection:
        rows = connection.execute(statement.order_by(*order).limit(limit + 1)).all()
    page = rows[:limit]
    return page, (page[-1] if len(rows) > limit else None)
