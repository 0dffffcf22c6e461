"""Opaque keyset-pagination cursors: the (time, tie-breaker) of a page's last row."""
from __future__ import annotations

import base64
import binascii
from datetime import datetime

from ..errors import ValidationError
from ..timeutil import format_rfc3339, parse_rfc3339


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
