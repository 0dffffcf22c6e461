"""The dashboard login (a session cookie) and CSRF tokens on every state-changing request."""
from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta, timezone

import pytest
from werkzeug.security import generate_password_hash

from tests.helpers import Clock, separate_app

FULL = "full-token-for-tests"
PASSWORD = "correct horse battery staple"
HTMX = {"HX-Request": "true"}


@pytest.fixture
def guarded_app(app, app_config):
    """An app with access control on and an admin password (a cheap hash, for speed)."""
    config = {**app_config, "ACCESS_CONTROL": "on", "API_TOKENS_FULL": FULL, "ADMIN_USERNAME": "ops",
              "ADMIN_PASSWORD_HASH": generate_password_hash(PASSWORD, "pbkdf2:sha256:1000"),
              "RATE_LIMIT_LOGIN": "5 per minute"}
    with separate_app(config) as guarded:
        yield guarded


@pytest.fixture
def guarded(guarded_app):
    return guarded_app.test_client()


def token_of(page: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', page)[1]


def sign_in(client, username="ops", password=PASSWORD, next_url="/metrics"):
    page = client.get(f"/login?next={next_url}").get_data(as_text=True)
    return client.post("/login", data={"username": username, "password": password, "next": next_url,
                                       "csrf_token": token_of(page)})


@pytest.mark.parametrize("path", ["/events", "/events/export", "/events/live", "/metrics", "/metrics/jobs/x"])
def test_every_dashboard_page_sends_visitors_to_the_login(guarded, path):
    response = guarded.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_htmx_requests_without_a_session_are_told_to_sign_in(guarded):
    response = guarded.get("/events?user_id=1", headers=HTMX)
    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/login?next=")


def test_signing_in_opens_the_dashboard_with_a_safe_session_cookie(guarded):
    response = sign_in(guarded)
    assert response.status_code == 303
    assert response.headers["Location"] == "/metrics"
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    page = guarded.get("/metrics")
    assert page.status_code == 200
    assert "Sign out" in page.get_data(as_text=True)


def test_the_cookie_is_secure_in_production(app_config, app):
    config = {**app_config, "APP_ENV": "production", "SECRET_KEY": "a-real-secret", "API_TOKENS_FULL": FULL,
              "ADMIN_USERNAME": "ops", "ADMIN_PASSWORD_HASH": generate_password_hash(PASSWORD, "pbkdf2:sha256:1000")}
    with separate_app(config) as production:
        response = sign_in(production.test_client())
    cookies = response.headers.getlist("Set-Cookie")
    assert len(cookies) == 2 and all("Secure" in cookie for cookie in cookies)  # the session and the device


@pytest.mark.parametrize(("username", "password"), [("ops", "wrong"), ("admin", PASSWORD), ("", "")])
def test_a_wrong_name_or_password_is_refused(guarded, username, password):
    response = sign_in(guarded, username, password)
    assert response.status_code == 401
    assert "do not match" in response.get_data(as_text=True)
    assert guarded.get("/events").status_code == 302


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "javascript:alert(1)"])
def test_the_login_never_redirects_off_site(guarded, target):
    response = sign_in(guarded, next_url=target)
    assert response.headers["Location"] == "/events"


def test_logout_needs_the_csrf_token_and_ends_the_session(guarded):
    sign_in(guarded)
    page = guarded.get("/events").get_data(as_text=True)
    assert guarded.post("/logout").status_code == 400
    response = guarded.post("/logout", data={"csrf_token": token_of(page)})
    assert response.status_code == 303
    assert guarded.get("/events").status_code == 302


def test_recalculate_refuses_a_request_without_the_csrf_token(client):
    page = client.get("/metrics").get_data(as_text=True)
    refused = client.post("/metrics/recalculate", headers=HTMX)
    assert refused.status_code == 400
    assert ("This form was stale or was not sent from this dashboard; reload the page and try again."
            in refused.get_data(as_text=True))
    forged = client.post("/metrics/recalculate", headers={**HTMX, "X-CSRF-Token": "forged"})
    assert forged.status_code == 400
    accepted = client.post("/metrics/recalculate", headers={**HTMX, "X-CSRF-Token": token_of(page)})
    assert accepted.status_code == 200


def test_sign_in_attempts_are_rate_limited(guarded):
    statuses = [sign_in(guarded, password="wrong").status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]


def test_the_api_keeps_using_tokens_not_the_session(guarded):
    sign_in(guarded)
    assert guarded.get("/api/events").status_code == 401
    assert guarded.get("/api/events", headers={"Authorization": f"Bearer {FULL}"}).status_code == 200


# Sign-in budgets: per address and per user name; charged only after the CSRF check (issue 11, classes 2 and 3).

def _attack_config(app_config, clock):
    return {**app_config, "ACCESS_CONTROL": "on", "API_TOKENS_FULL": FULL, "ADMIN_USERNAME": "ops",
            "ADMIN_PASSWORD_HASH": generate_password_hash(PASSWORD, "pbkdf2:sha256:1000"),
            "RATE_LIMIT_LOGIN": "1000 per minute", "SIGN_IN_FREE_FAILURES": 3, "SIGN_IN_MAX_DELAY_SECONDS": 8,
            "CLOCK": clock}


def _from(guarded_app, address):
    client = guarded_app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_wrong_passwords_for_a_name_slow_it_down_with_delays_that_grow_but_stay_bounded(app_config, app):  # `app` empties the Redis namespace
    clock = Clock(datetime.now(timezone.utc))
    with separate_app(_attack_config(app_config, clock)) as guarded_app:
        def attempt(address, username="ops", password="wrong"):
            return sign_in(_from(guarded_app, address), username, password)

        # the name's failures count from every address and every spelling of it
        names = ["ops", "OPS", " ops "]
        assert [attempt(f"10.0.0.{n}", name).status_code for n, name in enumerate(names)] == [401, 401, 401]
        waits = []
        for _ in range(6):
            refused = attempt("10.0.0.9", "ｏｐｓ")
            assert refused.status_code == 429
            waits.append(int(refused.headers["Retry-After"]))
            clock.advance(timedelta(seconds=waits[-1]))
            assert attempt("10.0.0.9").status_code == 401  # once the delay has passed, a guess is heard again
        assert waits == [1, 2, 4, 8, 8, 8]
        assert attempt("10.0.0.9", "someone-else").status_code == 401  # another name is not slowed
        clock.advance(timedelta(seconds=8))
        assert attempt("10.0.0.9", password=PASSWORD).status_code == 303  # a success ends the delay
        assert attempt("10.0.0.9").status_code == 401


def test_guesses_sent_together_get_one_attempt_per_delay(app_config, app):  # `app` empties the Redis namespace
    """Each attempt is judged and counted in one step: eight guesses sent at once, when the delay has just
    ended, are one attempt and seven refusals (checked and counted apart, all eight would be heard)."""
    clock = Clock(datetime.now(timezone.utc))
    with separate_app(_attack_config(app_config, clock)) as guarded_app:
        for n in range(3):
            assert sign_in(_from(guarded_app, f"10.0.4.{n}"), "ops", "wrong").status_code == 401
        clock.advance(timedelta(seconds=1))
        ready = []
        for n in range(8):
            client = _from(guarded_app, f"10.0.5.{n}")
            ready.append((client, token_of(client.get("/login").get_data(as_text=True))))
        start = threading.Barrier(len(ready))
        statuses = []

        def guess(client, token):
            start.wait()
            statuses.append(client.post("/login", data={"username": "ops", "password": "wrong",
                                                        "csrf_token": token}).status_code)

        threads = [threading.Thread(target=guess, args=pair) for pair in ready]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(statuses) == [401] + [429] * 7


def test_the_admins_known_browser_gets_in_while_others_guess_the_password(app_config, app):  # `app` empties the Redis namespace
    """OWASP's device cookie: attackers from two addresses keep the name's delay at its longest, a new browser
    must wait it out, and the browser that signed in before is judged by its own failures only."""
    clock = Clock(datetime.now(timezone.utc))
    with separate_app(_attack_config(app_config, clock)) as guarded_app:
        admin = _from(guarded_app, "10.0.1.1")
        assert sign_in(admin).status_code == 303
        admin.post("/logout", data={"csrf_token": token_of(admin.get("/metrics").get_data(as_text=True))})
        for minute in range(3):  # about 20 guesses a minute from two addresses
            for guess in range(20):
                sign_in(_from(guarded_app, f"10.0.2.{guess % 2}"), "ops", f"guess-{minute}-{guess}")
                clock.advance(timedelta(seconds=3))
        clock.advance(timedelta(seconds=8))
        assert sign_in(_from(guarded_app, "10.0.2.0"), "ops", "one-more").status_code == 401
        newcomer = sign_in(_from(guarded_app, "10.0.1.2"))
        assert newcomer.status_code == 429 and newcomer.headers["Retry-After"] == "8"
        assert "Too many wrong passwords" in newcomer.get_data(as_text=True)
        assert sign_in(admin, password="typo").status_code == 401  # its own failures count for it
        assert sign_in(admin).status_code == 303
        assert admin.get("/metrics").status_code == 200


def test_a_device_cookie_counts_only_for_the_name_it_was_given_to_and_cannot_be_forged(app_config, app):  # `app` empties the Redis namespace
    clock = Clock(datetime.now(timezone.utc))
    with separate_app(_attack_config(app_config, clock)) as guarded_app:
        admin = _from(guarded_app, "10.0.3.1")
        assert sign_in(admin).status_code == 303
        for _ in range(3):
            sign_in(_from(guarded_app, "10.0.3.2"), "ops", "wrong")
        forged = _from(guarded_app, "10.0.3.3")
        forged.set_cookie("device", "eyJ1c2VyIjoiIiwiZGV2aWNlIjoieCJ9.forged", path="/login")
        assert sign_in(forged).status_code == 429
        assert sign_in(admin, "someone-else", "wrong").status_code == 401
        assert sign_in(admin).status_code == 303


def test_cross_site_posts_without_the_token_never_spend_the_sign_in_budget(guarded):
    for _ in range(20):  # a hostile page's form: no session cookie, no CSRF token
        attacker = guarded.application.test_client()
        response = attacker.post("/login", data={"username": "ops", "password": "guess"})
        assert response.status_code == 400
    for _ in range(20):  # the same with a session of its own but a forged token
        forged = guarded.post("/login", data={"username": "ops", "password": "guess", "csrf_token": "forged"})
        assert forged.status_code == 400
    assert sign_in(guarded).status_code == 303


def test_cross_site_posts_never_spend_the_recalculate_budget(app_config, app):
    with separate_app({**app_config, "RATE_LIMIT_RECALCULATE": "1 per minute"}) as open_app:
        for _ in range(5):
            assert open_app.test_client().post("/metrics/recalculate", headers=HTMX).status_code == 400
        client = open_app.test_client()
        page = client.get("/metrics").get_data(as_text=True)
        assert client.post("/metrics/recalculate", headers={**HTMX, "X-CSRF-Token": token_of(page)}).status_code == 200
