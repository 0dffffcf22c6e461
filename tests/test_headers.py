"""Security headers on every kind of response."""
from __future__ import annotations

import pytest
from werkzeug.security import generate_password_hash

from tests.helpers import separate_app
from tests.test_web_login import sign_in


@pytest.mark.parametrize(("method", "path"), [
    ("get", "/api/events"),
    ("get", "/api/nothing"),
    ("post", "/api/event"),
    ("get", "/"),
])
def test_every_response_carries_the_security_headers(client, method, path):
    response = getattr(client, method)(path)
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


# Nothing that carries data may be kept by a browser or shared cache (issue 11, class 12).

@pytest.mark.parametrize(("method", "path"), [
    ("get", "/api/events"),
    ("get", "/api/events/export"),
    ("get", "/api/metrics"),
    ("post", "/api/event"),
    ("get", "/api/metrics/jobs/unknown"),
    ("get", "/api/events?limit=0"),
])
def test_api_answers_are_never_stored(client, method, path):
    kwargs = {"json": {"user_id": 1, "action": "page_view"}} if method == "post" else {}
    with getattr(client, method)(path, **kwargs) as response:
        response.get_data()
        assert response.headers["Cache-Control"] == "no-store", f"{method.upper()} {path}: {response.status_code}"


def test_signed_in_pages_fragments_and_exports_are_never_stored(app, app_config):
    config = {**app_config, "ACCESS_CONTROL": "on", "API_TOKENS_FULL": "a-token", "ADMIN_USERNAME": "ops",
              "ADMIN_PASSWORD_HASH": generate_password_hash("pw", "pbkdf2:sha256:1000")}
    with separate_app(config) as guarded:
        admin = guarded.test_client()
        assert admin.get("/login").headers["Cache-Control"] == "no-store"  # it holds the session's CSRF token
        sign_in(admin, password="pw")
        for path, headers in [("/events", {}), ("/events?user_id=1", {"HX-Request": "true"}), ("/metrics", {}),
                              ("/events/export", {})]:
            with admin.get(path, headers=headers) as response:
                response.get_data()
                assert response.status_code == 200
                assert response.headers["Cache-Control"] == "no-store", path


def test_static_files_and_the_api_description_may_be_cached(client):
    for path in ("/static/app.css", "/api/openapi.json"):
        with client.get(path) as response:
            response.get_data()
            assert "no-store" not in response.headers.get("Cache-Control", ""), path


def test_https_gets_hsts_and_secure_cookies_whatever_app_env_says(app, app_config):
    """A deployment behind TLS that left APP_ENV unset (issue 21, class 10): what came over HTTPS is
    answered with HSTS and a Secure session cookie; plain HTTP in development gets neither."""
    config = {**app_config, "ACCESS_CONTROL": "on", "API_TOKENS_FULL": "full", "ADMIN_USERNAME": "ops",
              "ADMIN_PASSWORD_HASH": generate_password_hash("pw", "pbkdf2:sha256:1000"), "SECRET_KEY": "s3cret",
              "TRUSTED_PROXIES": 1}  # a TLS proxy on this host says the scheme
    with separate_app(config) as guarded:
        plain = guarded.test_client()
        assert "Strict-Transport-Security" not in plain.get("/healthz").headers
        assert not any("Secure" in cookie for cookie in sign_in(plain, "ops", "pw").headers.getlist("Set-Cookie"))
        tls = guarded.test_client()
        tls.environ_base["HTTP_X_FORWARDED_PROTO"] = "https"
        assert tls.get("/healthz").headers["Strict-Transport-Security"] == "max-age=31536000"
        cookies = sign_in(tls, "ops", "pw").headers.getlist("Set-Cookie")
        assert len(cookies) == 2 and all("Secure" in cookie for cookie in cookies)
