"""What can go wrong in the domain, said without HTTP.

The services and input rules raise these; `app.http.errors` alone maps them
to statuses and the JSON envelope (or to a message on a dashboard page).
"""
from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A failure a caller can act on: a machine-readable `code`, a message, the field at fault."""

    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None,
                 details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details
        if code is not None:
            self.code = code


class ValidationError(DomainError):
    """The input breaks a rule; nothing was done."""

    code = "invalid_field"


class ConflictError(DomainError):
    """The input contradicts what is stored (an id reused with other content)."""

    code = "conflict"


class NotFoundError(DomainError):
    code = "not_found"


class UnavailableError(DomainError):
    """A dependency (the database, the queue) cannot serve the request now; retrying later may work."""

    code = "unavailable"
