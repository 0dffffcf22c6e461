"""One template per page, rendered whole or in blocks, and the filters its templates use.

A normal request gets the whole page. An htmx request (`HX-Request`) gets
only the named blocks of that same template, so a fragment can never drift
from the page it is part of. htmx's history-restore request (Back, when the
page is not in its cache) asks for the whole page again, and gets it.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from flask import Response, current_app, render_template, request

from ..core.times import format_rfc3339
from . import bp


def wants_fragment() -> bool:
    """True for an htmx request that will swap part of the page."""
    return (request.headers.get("HX-Request") == "true"
            and request.headers.get("HX-History-Restore-Request") != "true")


def render_blocks(template_name: str, blocks: Iterable[str], context: dict[str, Any]) -> str:
    """Render only `blocks` of a template, in order, with the context a full render would have."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    template = app.jinja_env.get_or_select_template(template_name)
    app.update_template_context(context)
    jinja_context = template.new_context(context)
    return "".join(chunk for name in blocks for chunk in template.blocks[name](jinja_context))


def render(template_name: str, blocks: Iterable[str], *, status: int = 200,
           headers: Mapping[str, str] | None = None, **context: Any) -> Response:
    """The whole page, or for an htmx request just `blocks` of it.

    Templates see `fragment`, so a block meant only for swaps (out-of-band
    updates of the field messages) renders nothing in the whole page.
    """
    if wants_fragment():
        body = render_blocks(template_name, blocks, {"fragment": True, **context})
    else:
        body = render_template(template_name, fragment=False, **context)
    return Response(body, status=status, headers=dict(headers or {}), mimetype="text/html")


def history_headers(url: str) -> dict[str, str]:
    """Ask htmx to push `url` onto the browser history, unless the browser already shows it.

    The server names the canonical URL (only the fields that are filled in),
    and a refresh of the view that is already shown adds no history entry.
    """
    current = request.headers.get("HX-Current-URL")
    if current is None:
        return {}
    shown, wanted = urlsplit(current), urlsplit(url)
    if shown.path == wanted.path and sorted(parse_qsl(shown.query)) == sorted(parse_qsl(wanted.query)):
        return {}
    return {"HX-Push-Url": url}


def message_response(message: str, status: int) -> Response:
    """A short message as a page, or for htmx in the page's alert region, leaving the rest of it intact."""
    headers = {"HX-Retarget": "#page-alert", "HX-Reswap": "innerHTML"} if wants_fragment() else {}
    return render("message.html", ["alert"], status=status, headers=headers, message=message)


@bp.after_request
def vary_on_htmx(response: Response) -> Response:
    """The same URL answers a page or a fragment, so caches must keep them apart."""
    response.vary.add("HX-Request")
    response.vary.add("HX-History-Restore-Request")
    return response


@bp.app_template_filter("utc")
def utc_text(moment: datetime | None, seconds: bool = True) -> str:
    """`2025-10-23 13:07:05` in UTC: what a person reads."""
    if moment is None:
        return ""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


@bp.app_template_filter("clock")
def clock_text(moment: datetime) -> str:
    """`13:07` in UTC, for the end of a window whose day is already shown."""
    return moment.astimezone(timezone.utc).strftime("%H:%M")


@bp.app_template_filter("iso")
def iso_text(moment: datetime) -> str:
    """RFC 3339, for `<time datetime>`."""
    return format_rfc3339(moment)


@bp.app_template_filter("thousands")
def thousands(number: int) -> str:
    return f"{number:,}"


@bp.app_template_filter("duration")
def duration_text(span: timedelta | None) -> str:
    """`350 ms`, `4.2 s` or `3 min 5 s`: a run's duration at a glance."""
    if span is None:
        return ""
    millis = int(span.total_seconds() * 1000)
    if millis < 1000:
        return f"{millis} ms"
    if millis < 60_000:
        return f"{millis / 1000:.1f} s"
    minutes, seconds = divmod(millis // 1000, 60)
    return f"{minutes} min {seconds} s"


@bp.app_template_filter("compact_json")
def compact_json(value: Any) -> str:
    """A nested metadata value as compact JSON text (escaped by the template like any string)."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
