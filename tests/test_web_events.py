"""The events page: whole page and htmx fragments from one template, filters, paging, live, export."""
from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timedelta, timezone

import pytest

from tests.helpers import post_event, separate_app

UTC = timezone.utc
DAY0 = datetime(2025, 10, 20, tzinfo=UTC)
HTMX = {"HX-Request": "true"}


def store(client, user_id=1, when=None, action="page_view", **metadata):
    fields = {"user_id": user_id, "action": action, "metadata": metadata}
    if when is not None:
        fields["occurred_at"] = when.isoformat()
    response = post_event(client, **fields)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def fragment(client, url, **headers):
    return client.get(url, headers={**HTMX, **headers})


def row_users(html: str) -> list[int]:
    return [int(user) for user in re.findall(r'data-label="User">(\d+)<', html)]


def error_text(html: str, field: str) -> str:
    match = re.search(rf'<p id="{field}-error" class="field-error"[^>]*>([^<]*)</p>', html)
    assert match, f"no message slot for {field}"
    return match.group(1)


def test_root_leads_to_the_events_page(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/events"


def test_full_page_and_fragment_come_from_one_template(client):
    store(client, user_id=5, when=DAY0)
    page = client.get("/events")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert html.startswith("<!doctype html>")
    assert '<form class="filters"' in html and 'id="event-results"' in html
    assert 'src="/static/htmx.min.js"' in html and "<script>" not in html
    assert "hx-swap-oob" not in html

    part = fragment(client, "/events?user_id=5")
    assert part.status_code == 200
    body = part.get_data(as_text=True)
    assert "<html" not in body and "<form" not in body
    assert body.lstrip().startswith('<section id="event-results"')
    assert row_users(body) == [5]
    assert '<p id="user_id-error" class="field-error" hx-swap-oob="true"></p>' in body
    assert "HX-Request" in part.headers["Vary"] and "HX-Request" in page.headers["Vary"]


def test_history_restore_gets_the_whole_page(client):
    response = client.get("/events?user_id=5", headers={**HTMX, "HX-History-Restore-Request": "true"})
    html = response.get_data(as_text=True)
    assert "<html" in html and 'value="5"' in html


def test_the_page_pushes_the_canonical_url_of_its_filters(client):
    response = fragment(client, "/events?user_id=5&action=&meta=&from=&till=&live=",
                        **{"HX-Current-URL": "http://localhost/events"})
    assert response.headers["HX-Push-Url"] == "/events?user_id=5"
    again = fragment(client, "/events?user_id=5&action=", **{"HX-Current-URL": "http://localhost/events?user_id=5"})
    assert "HX-Push-Url" not in again.headers, "a view already shown adds no history entry"


def test_filters_narrow_the_list_and_empty_fields_mean_not_given(client):
    store(client, user_id=1, when=DAY0 + timedelta(hours=9, minutes=59), page="/home")
    store(client, user_id=1, when=DAY0 + timedelta(hours=10), action="click", page="/home")
    store(client, user_id=2, when=DAY0 + timedelta(hours=11), page="/home")
    store(client, user_id=1, when=DAY0 + timedelta(hours=12), page="/pricing")
    everything = client.get("/events?user_id=&action=&meta=&from=&till=").get_data(as_text=True)
    assert row_users(everything) == [1, 2, 1, 1]
    assert row_users(client.get("/events?user_id=1").get_data(as_text=True)) == [1, 1, 1]
    home = client.get("/events?meta=page+%3D+%2Fhome").get_data(as_text=True)
    assert row_users(home) == [2, 1, 1]
    clicks = client.get("/events?action=click").get_data(as_text=True)
    assert "click" in clicks and row_users(clicks) == [1]


def test_from_and_till_are_read_as_utc_half_open(client):
    store(client, user_id=1, when=DAY0 + timedelta(hours=9, minutes=59))
    store(client, user_id=2, when=DAY0 + timedelta(hours=10))
    store(client, user_id=3, when=DAY0 + timedelta(hours=11))
    html = client.get("/events?from=2025-10-20T10:00&till=2025-10-20T11:00").get_data(as_text=True)
    assert row_users(html) == [2]
    assert 'value="2025-10-20T10:00"' in html
    assert "in <abbr" in html and "UTC" in html
    with_offset = client.get("/events?from=2025-10-20T12:00:00%2B02:00").get_data(as_text=True)
    assert row_users(with_offset) == [3, 2], "an explicit offset still counts, shown back in UTC"
    assert 'value="2025-10-20T10:00"' in with_offset


@pytest.mark.parametrize(("query", "field", "message"), [
    ("user_id=-5", "user_id", "must be a positive integer"),
    ("user_id=abc", "user_id", "must be a positive integer"),
    ("from=2025-02-30T10:00", "from", "is not a real date and time"),
    ("till=yesterday", "till", "must be a date and time such as 2025-10-23T13:07 (UTC)"),
    ("from=2025-10-21T00:00&till=2025-10-20T00:00", "till", "must not be before `from`"),
    ("meta=page", "meta", "must look like key = value, for example page = /home"),
    ("action=" + "x" * 300, "action", "must be at most 255 characters"),
])
def test_an_invalid_filter_is_named_next_to_its_field_with_400(client, query, field, message):
    page = client.get(f"/events?{query}")
    assert page.status_code == 400
    html = page.get_data(as_text=True)
    assert error_text(html, field) == message
    assert f'aria-describedby="{field}-error"' in html or f'aria-describedby="{field}-hint {field}-error"' in html
    assert re.search(rf'name="{field}"[^>]*aria-invalid="true"', html)
    assert "Fix the filter marked above" in html

    part = fragment(client, f"/events?{query}")
    assert part.status_code == 400
    body = part.get_data(as_text=True)
    assert "<html" not in body
    assert re.search(rf'<p id="{field}-error" class="field-error" hx-swap-oob="true">[^<]+</p>', body)
    assert "Export CSV" not in body


def test_several_invalid_filters_each_get_their_message(client):
    html = client.get("/events?user_id=0&from=2025-13-01T00:00").get_data(as_text=True)
    assert error_text(html, "user_id").startswith("must be between 1 and")
    assert error_text(html, "from") == "is not a real date and time"
    assert "Fix the filters marked above" in html


def test_empty_state_says_so(client):
    html = client.get("/events").get_data(as_text=True)
    assert "No events match these filters." in html and "Nothing has been recorded yet." in html
    store(client, user_id=1)
    filtered = client.get("/events?user_id=2").get_data(as_text=True)
    assert "No events match these filters." in filtered and "clear the filters" in filtered


def test_the_footer_names_the_oldest_event_kept(client):
    assert "Oldest event kept: none yet." in client.get("/events").get_data(as_text=True)
    store(client, user_id=1, when=DAY0 + timedelta(hours=5, seconds=7))
    store(client, user_id=2, when=DAY0 + timedelta(days=1))
    html = client.get("/events?user_id=2").get_data(as_text=True)
    assert "Oldest event kept: 2025-10-20 05:00:07 UTC." in html


def test_metadata_is_shown_as_text_never_as_markup(client):
    store(client, user_id=1, x="<script>alert(1)</script>", nested={"a": "<b>"})
    for response in (client.get("/events"), fragment(client, "/events")):
        html = response.get_data(as_text=True)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "<script>alert" not in html and "<b>" not in html
        assert "&lt;b&gt;" in html


def test_load_more_walks_the_keyset_cursor_to_the_end(client, app):
    for i in range(120):
        store(client, user_id=7, when=DAY0 + timedelta(minutes=i))
    store(client, user_id=8, when=DAY0)
    html = client.get("/events?user_id=7").get_data(as_text=True)
    seen = re.findall(r'<time datetime="([^"]+)"', html)
    assert len(seen) == 50
    more = re.search(r'hx-get="(/events/more\?[^"]+)"', html).group(1).replace("&amp;", "&")
    assert "user_id=7" in more and "cursor=" in more
    while more:
        part = fragment(client, more)
        assert part.status_code == 200
        body = part.get_data(as_text=True)
        assert "<html" not in body and "<table" not in body
        seen += re.findall(r'<time datetime="([^"]+)"', body)
        assert '<div id="load-more" class="load-more" hx-swap-oob="true">' in body
        found = re.search(r'hx-get="(/events/more\?[^"]+)"', body)
        more = found.group(1).replace("&amp;", "&") if found else None
    assert "That is every matching event." in body
    assert len(seen) == 120 == len(set(seen))
    assert seen == sorted(seen, reverse=True)


def test_load_more_works_without_javascript_as_a_link(client):
    for i in range(60):
        store(client, user_id=7, when=DAY0 + timedelta(minutes=i))
    html = client.get("/events?user_id=7").get_data(as_text=True)
    href = re.search(r'id="load-more-link" class="button" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert href.startswith("/events?")
    older = client.get(href).get_data(as_text=True)
    assert "Showing older events." in older
    assert len(re.findall(r'<time datetime=', older)) == 10
    assert "That is every matching event." in older
    assert client.get("/events/more?cursor=x").status_code == 302
    broken = client.get("/events?cursor=not-a-cursor")
    assert broken.status_code == 400 and "This link has expired" in broken.get_data(as_text=True)


def test_live_poll_brings_only_new_events_and_moves_its_position(client):
    store(client, user_id=3, when=DAY0)
    html = client.get("/events?user_id=3&live=1").get_data(as_text=True)
    assert 'name="live" type="checkbox" value="1" checked' in html
    poll = re.search(r'hx-get="(/events/live\?[^"]+)"\s+hx-trigger="every 5s"', html).group(1).replace("&amp;", "&")
    assert "after=" in poll and "user_id=3" in poll
    assert fragment(client, poll).status_code == 204

    new = store(client, user_id=3, when=DAY0 + timedelta(minutes=5), action="fresh")
    store(client, user_id=4, when=DAY0 + timedelta(minutes=6))
    part = fragment(client, poll)
    assert part.status_code == 200
    body = part.get_data(as_text=True)
    assert "fresh" in body and row_users(body) == [3]
    assert new["occurred_at"] in body
    assert '<div id="live-poller" class="live-status" hx-swap-oob="true"' in body
    next_poll = re.search(r'hx-get="(/events/live\?[^"]+)"', body).group(1).replace("&amp;", "&")
    assert next_poll != poll
    assert fragment(client, next_poll).status_code == 204


def test_live_poll_on_an_empty_list_removes_the_empty_state(client):
    html = client.get("/events?user_id=9&live=1").get_data(as_text=True)
    assert 'id="events-empty"' in html
    poll = re.search(r'hx-get="(/events/live\?[^"]+)"', html).group(1).replace("&amp;", "&")
    assert "after" not in poll
    store(client, user_id=9)
    body = fragment(client, poll).get_data(as_text=True)
    assert '<tr id="events-empty" hx-swap-oob="delete">' in body
    assert row_users(body) == [9]


def test_live_is_off_unless_asked(client):
    html = client.get("/events").get_data(as_text=True)
    assert "/events/live" not in html and "every 5s" not in html


def test_export_link_downloads_exactly_the_filtered_events(client):
    store(client, user_id=1, when=DAY0 + timedelta(hours=10), page="/home")
    wanted = store(client, user_id=1, when=DAY0 + timedelta(hours=11), page="/home")
    store(client, user_id=1, when=DAY0 + timedelta(hours=12), page="/pricing")
    store(client, user_id=2, when=DAY0 + timedelta(hours=11), page="/home")
    html = client.get("/events?user_id=1&meta=page+%3D+%2Fhome&from=2025-10-20T10:30&live=1").get_data(as_text=True)
    href = re.search(r'href="(/events/export\?[^"]+)" download', html).group(1).replace("&amp;", "&")
    response = client.get(href)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="events-')
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [row["id"] for row in rows] == [wanted["id"]]
    api = client.get("/api/events/export?user_id=1&meta.page=/home&from=2025-10-20T10:30:00Z")
    assert api.get_data(as_text=True) == response.get_data(as_text=True), "the page and the API export agree"


def test_export_of_an_invalid_filter_is_a_400_message(client):
    response = client.get("/events/export?user_id=-1")
    assert response.status_code == 400
    assert "Cannot export these filters (user_id: must be a positive integer)." in response.get_data(as_text=True)


def test_database_down_is_a_503_message_not_a_500(app_config):
    with separate_app({**app_config, "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nowhere"}) as down:
        check_pages_without_database(down.test_client())


def check_pages_without_database(client):
    page = client.get("/events")
    assert page.status_code == 503
    assert "The database is unavailable right now" in page.get_data(as_text=True)
    part = client.get("/events?user_id=1", headers=HTMX)
    assert part.status_code == 503
    assert part.headers["HX-Retarget"] == "#page-alert"
    assert "<html" not in part.get_data(as_text=True)
