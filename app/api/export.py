"""`GET /api/events/export`: the events list's filters, answered as one streamed CSV file."""
from __future__ import annotations

from flask import Response, request

from ..core.errors import ValidationError
from ..core.list_parameters import EventExportParameters
from ..extensions import database
from ..http.csv_download import csv_download
from ..http.policy import LONG_READS, Access, policy
from ..http.rate_limits import READ
from . import bp
from .events import event_filter


@bp.get("/events/export")
@policy(Access.FULL, budgets=(READ,), csrf=False, concurrency=LONG_READS)
def export_events() -> Response:
    """Every event matching `GET /api/events`'s filters, oldest first, as `text/csv`.

    The filters are checked before the first byte goes out, so a bad one is
    still a 400 envelope; after that the rows stream, a keyset page at a time.
    """
    for name in ("limit", "cursor"):
        if name in request.args:
            raise ValidationError(f"unknown query parameter {name!r}: the export holds every matching event",
                                  field=name, code="unknown_parameter")
    flt, _limit, _cursor = event_filter(EventExportParameters)
    return csv_download(database(), flt)
