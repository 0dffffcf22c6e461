"""Dashboard sign-ins live on the server: signing out, idling or outliving the lifetime ends every copy
of the cookie, and a sign-in that cannot be checked is refused (issue 11, class 10)."""
from __future__ import annotations

import time

import pytest
from werkzeug.security import generate_password_hash

from app.dev.embedded import start_redis
from tests.helpers import separate_app
from tests.test_web_login import PASSWORD, sign_in, token_of

FULL = "full-token-for-tests"


def guarded_config(app_config, **extra):
    return {**app_config, "ACCESS_CONTROL": "on", "API_TOKENS_FULL": FULL, "ADMIN_USERNAME": "ops",
            "ADMIN_PASSWORD_HASH": generate_password_hash(PASSWORD, "pbkdf2:sha256:1000"), **extra}


def session_cookie(client) -> str:
    return client.get_cookie("session").value


def with_cookie(app, cookie: str):
    """Another browser, holding a copy of someone's session cookie."""
    client = app.test_client()
    client.set_cookie("session", cookie)
    return client


@pytest.fixture
def guarded_app(app, app_config):
    with separate_app(guarded_config(app_config)) as guarded:
        yield guarded


def test_a_cookie_copied_before_sign_out_stops_working_at_sign_out(guarded_app):
    admin = guarded_app.test_client()
    assert sign_in(admin).status_code == 303
    copy = with_cookie(guarded_app, session_cookie(admin))
    assert copy.get("/events").status_code == 200
    token = token_of(admin.get("/events").get_data(as_text=True))
    assert admin.post("/logout", data={"csrf_token": token}).status_code == 303
    response = copy.get("/events")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert copy.get("/events/export").status_code == 302


def test_signing_in_again_does_not_revive_an_ended_sign_in(guarded_app):
    admin = guarded_app.test_client()
    sign_in(admin)
    old = session_cookie(admin)
    token = token_of(admin.get("/events").get_data(as_text=True))
    admin.post("/logout", data={"csrf_token": token})
    sign_in(admin)
    assert admin.get("/events").status_code == 200
    assert with_cookie(guarded_app, old).get("/events").status_code == 302


def test_an_idle_sign_in_ends(app, app_config):
    with separate_app(guarded_config(app_config, SESSION_IDLE_SECONDS=1)) as guarded:
        admin = guarded.test_client()
        sign_in(admin)
        assert admin.get("/events").status_code == 200
        time.sleep(1.5)  # longer than the idle timeout: the bound under test
        assert admin.get("/events").status_code == 302


def test_a_sign_in_ends_at_its_lifetime_however_active(app, app_config):
    with separate_app(guarded_config(app_config, SESSION_LIFETIME_SECONDS=1, SESSION_IDLE_SECONDS=60)) as guarded:
        admin = guarded.test_client()
        sign_in(admin)
        cookie = session_cookie(admin)  # replayed as is: the server, not the cookie's expiry, must end it
        assert with_cookie(guarded, cookie).get("/events").status_code == 200
        time.sleep(1.5)  # longer than the lifetime: the bound under test
        assert with_cookie(guarded, cookie).get("/events").status_code == 302


def test_while_redis_is_down_sign_ins_are_refused_not_assumed(app, app_config, tmp_path):
    signed_in_cookie = None
    with separate_app(guarded_config(app_config)) as up:
        admin = up.test_client()
        sign_in(admin)
        signed_in_cookie = session_cookie(admin)
    own = start_redis(tmp_path / "valkey")
    own.stop()
    with separate_app(guarded_config(app_config, REDIS_URL=own.url)) as down:
        refused = with_cookie(down, signed_in_cookie).get("/events")
        assert refused.status_code == 503
        assert "cannot be checked" in refused.get_data(as_text=True)
        assert with_cookie(down, signed_in_cookie).get("/events/export").status_code == 503
        assert sign_in(down.test_client()).status_code == 503
