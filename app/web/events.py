"""`/events`: the filterable event list, its "Load more" pages and its live updates."""
from __future__ import annotations

from typing import Any

from flask import Response, redirect, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from ..core.errors import ValidationError
from ..extensions import database, settings
from ..http.csv_download import csv_download
from ..http.policy import LONG_READS, Access, policy
from ..http.rate_limits import READ
from ..services.events import EventCursor, list_events, oldest_event_time
from . import bp
from .forms import FilterForm, parse_event_form
from .rendering import history_headers, message_response, render, wants_fragment

TEMPLATE = "events/index.html"
PAGE_SIZE = 50
LIVE_INTERVAL_SECONDS = 5
BROKEN_LINK = "This link has expired or was changed; reload the page to start again from the newest events."


def _cursor(token: str | None) -> EventCursor | None:
    return EventCursor.decode(token) if token else None


def _context(form: FilterForm, **extra: Any) -> dict[str, Any]:
    return {"form": form, "active": "events", "page_size": PAGE_SIZE,
            "live_interval": LIVE_INTERVAL_SECONDS, "controls_oob": False, "replaces_empty": False, **extra}


@bp.get("/events")
@policy(Access.SIGNED_IN, budgets=(READ,), csrf=True)
def events() -> Response:
    """The whole page, or (for htmx) the results of the filters as they are typed.

    A `cursor` (from the "Load more" link when JavaScript is off) starts the
    list after that event, so the page still pages through everything.
    """
    form = parse_event_form(request.args)
    try:
        after = _cursor(request.args.get("cursor"))
    except ValidationError:
        form.errors["cursor"] = BROKEN_LINK
        after = None
    context = _context(form, events=[], next_cursor=None, newest=None, older=after is not None)
    if form.valid:
        page = list_events(database(), form.event_filter(), limit=PAGE_SIZE, after=after, newest_first=True)
        context.update(events=page.events,
                       next_cursor=page.next_cursor.encode() if page.next_cursor else None,
                       newest=EventCursor(page.events[0].occurred_at, page.events[0].id).encode()
                       if page.events and after is None else None,
                       export_url=url_for("web.export_events", **form.query()))
    if not wants_fragment():
        # the page's footer: what is kept, and for how long (a fragment does not show it)
        context.update(oldest_event=oldest_event_time(database()),
                       retention_days=settings().events_retention_days)
    canonical = url_for("web.events", **form.query())
    return render(TEMPLATE, ("results", "errors_oob"), status=200 if form.valid else 400,
                  headers=history_headers(canonical), **context)


def _fragment_request(cursor_parameter: str) -> tuple[FilterForm, EventCursor | None] | BaseResponse:
    """The filters and position of a Load more or Live request, or the answer for a bad one.

    Both are htmx-only fragments: a plain request goes to the page, and a
    filter or position that does not parse is a link we never made.
    """
    if not wants_fragment():
        return redirect(url_for("web.events", **request.args))
    form = parse_event_form(request.args)
    try:
        after = _cursor(request.args.get(cursor_parameter))
    except ValidationError:
        return message_response(BROKEN_LINK, 400)
    if not form.valid:
        return message_response(BROKEN_LINK, 400)
    return form, after


@bp.get("/events/more")
@policy(Access.SIGNED_IN, budgets=(READ,), csrf=True)
def more_events() -> BaseResponse:
    """The next (older) page's rows, appended by htmx, and the "Load more" control that follows them."""
    parsed = _fragment_request("cursor")
    if isinstance(parsed, BaseResponse):
        return parsed
    form, after = parsed
    if after is None:
        return message_response(BROKEN_LINK, 400)
    page = list_events(database(), form.event_filter(), limit=PAGE_SIZE, after=after, newest_first=True)
    context = _context(form, events=page.events, controls_oob=True,
                       next_cursor=page.next_cursor.encode() if page.next_cursor else None)
    return render(TEMPLATE, ("rows", "load_more"), **context)


@bp.get("/events/live")
@policy(Access.SIGNED_IN, budgets=(READ,), csrf=True)
def live_events() -> BaseResponse:
    """Events newer than the newest one shown, for the "Live" toggle; 204 when there are none.

    They are read oldest first from that position, a page at a time, so a
    burst larger than a page arrives over several polls without a gap.
    """
    parsed = _fragment_request("after")
    if isinstance(parsed, BaseResponse):
        return parsed
    form, after = parsed
    page = list_events(database(), form.event_filter(), limit=PAGE_SIZE, after=after)
    if not page.events:
        return Response(status=204)
    newest = page.events[-1]
    context = _context(form, events=list(reversed(page.events)), controls_oob=True, replaces_empty=after is None,
                       newest=EventCursor(newest.occurred_at, newest.id).encode())
    return render(TEMPLATE, ("rows", "live_poller"), **context)


@bp.get("/events/export")
@policy(Access.SIGNED_IN, budgets=(READ,), csrf=True, concurrency=LONG_READS)
def export_events() -> BaseResponse:
    """The page's filters as a CSV download, the same file as the API's export.

    It is a route of the dashboard, not a link to the API, so it sits behind
    the dashboard's login rather than needing an API token the browser lacks.
    """
    form = parse_event_form(request.args)
    if not form.valid:
        problems = "; ".join(f"{name}: {message}" for name, message in form.errors.items())
        return message_response(f"Cannot export these filters ({problems}).", 400)
    return csv_download(database(), form.event_filter())
