"""The dashboard's login: HTTP Basic with the admin's name and password whenever access control is on."""
from __future__ import annotations

import base64

import pytest
from werkzeug.security import generate_password_hash

from tests.helpers import separate_app

FULL = "full-token-for-tests"
PASSWORD = "correct horse battery staple"


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


@pytest.fixture
def guarded(app, app_config):
    """A client of an app with access control on and an admin password (a cheap hash, for speed)."""
    config = {**app_config, "ACCESS_CONTROL": "on", "API_TOKENS_FULL": FULL,
              "ADMIN_USERNAME": "ops", "ADMIN_PASSWORD_HASH": generate_password_hash(PASSWORD, "pbkdf2:sha256:1000")}
    with separate_app(config) as guarded_app:
        yield guarded_app.test_client()


@pytest.mark.parametrize("path", ["/events", "/events/export", "/events/live", "/metrics", "/metrics/jobs/x"])
def test_every_dashboard_page_asks_for_the_admin_login(guarded, path):
    response = guarded.get(path)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Basic realm="Activity tracker dashboard"')
    assert guarded.post("/metrics/recalculate").status_code == 401


@pytest.mark.parametrize(("username", "password"), [("ops", "wrong"), ("admin", PASSWORD), ("", "")])
def test_a_wrong_name_or_password_is_refused(guarded, username, password):
    assert guarded.get("/events", headers=basic(username, password)).status_code == 401


def test_the_admin_gets_pages_fragments_and_the_export(guarded):
    login = basic("ops", PASSWORD)
    stored = guarded.post("/api/event", json={"user_id": 3, "action": "login"},
                          headers={"Authorization": f"Bearer {FULL}"})
    assert stored.status_code == 201
    for _ in range(2):  # the second time from the remembered digest
        assert guarded.get("/events", headers=login).status_code == 200
    assert guarded.get("/events?user_id=3", headers={**login, "HX-Request": "true"}).status_code == 200
    assert guarded.get("/metrics", headers=login).status_code == 200
    export = guarded.get("/events/export", headers=login)
    assert export.status_code == 200 and export.mimetype == "text/csv"
    assert ",3,login," in export.get_data(as_text=True)
    assert guarded.get("/api/events/export", headers=login).status_code == 401, "the API still wants its token"


def test_static_files_and_the_root_redirect_need_no_login(guarded):
    with guarded.get("/static/htmx.min.js") as static:
        assert static.status_code == 200
    assert guarded.get("/").status_code == 302


def test_the_dashboard_is_open_when_access_control_is_off(client):
    assert client.get("/events").status_code == 200
