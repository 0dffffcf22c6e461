"""No configuration lets a session cookie signed with the public development key into the dashboard.

The default SECRET_KEY is in the source, so anyone can sign a cookie with it.
Every combination of environment, access-control mode, credentials and secret
must either refuse to start or treat such a cookie like no cookie at all.
"""
from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys

import pytest
from flask import Flask
from flask.sessions import SecureCookieSessionInterface

from app import create_app, extensions
from app.core.settings import DEV_SECRET_KEY, ConfigError
from app.dev.server import startup_settings
from tests.helpers import ROOT, free_port

APP_ENVS = ("development", "production", "staging")
ACCESS_CONTROLS = ("auto", "on", "off")
CREDENTIALS = {
    "none": {},
    "ingest token": {"API_TOKENS_INGEST": "an-ingest-token"},
    "full token": {"API_TOKENS_FULL": "a-full-token"},
    "admin password": {"ADMIN_PASSWORD_HASH": "scrypt:32768:8:1$salt$hash"},
    "token and password": {"API_TOKENS_FULL": "a-full-token", "ADMIN_PASSWORD_HASH": "scrypt:32768:8:1$salt$hash"},
}
UNSET = object()
SECRETS = (UNSET, "", DEV_SECRET_KEY, "a-long-random-secret")
PROTECTED_PAGES = ("/events", "/events/export", "/metrics")


def forged_cookie() -> str:
    """What an attacker signs with the public key: a session that claims the admin signed in."""
    signer = Flask("attacker")
    signer.config["SECRET_KEY"] = DEV_SECRET_KEY
    serializer = SecureCookieSessionInterface().get_signing_serializer(signer)
    return serializer.dumps({"user": "admin", "_permanent": True})


def answer(app: Flask, path: str, cookie: str | None) -> tuple[int, str | None]:
    client = app.test_client()
    if cookie is not None:
        client.set_cookie("session", cookie)
    with client.get(path) as response:  # a streamed export is read whole, then closed
        response.get_data()
        return response.status_code, response.headers.get("Location")


@pytest.mark.parametrize(("app_env", "access_control"), list(itertools.product(APP_ENVS, ACCESS_CONTROLS)))
def test_a_cookie_signed_with_the_public_key_gains_nothing(app, app_config, app_env, access_control):
    cookie = forged_cookie()
    breaches = []
    for (credential_name, credentials), secret in itertools.product(CREDENTIALS.items(), SECRETS):
        # dozens of reads from one address in a second: the read budget is not what this test is about
        config = {**app_config, "APP_ENV": app_env, "ACCESS_CONTROL": access_control, "RATE_LIMIT_READ": "",
                  **credentials}
        config.pop("SECRET_KEY")
        if secret is not UNSET:
            config["SECRET_KEY"] = secret
        try:
            started = create_app(config)
        except ConfigError:
            continue
        try:
            for path in PROTECTED_PAGES:
                anonymous, forged = answer(started, path, None), answer(started, path, cookie)
                if forged != anonymous:
                    breaches.append(f"{credential_name}, SECRET_KEY={'unset' if secret is UNSET else secret!r}: "
                                    f"{path} answers {forged} to the forged cookie, {anonymous} without it")
        finally:
            extensions.close(started)
    assert not breaches, "\n".join(breaches)


@pytest.mark.parametrize("secret", [UNSET, "", DEV_SECRET_KEY])
def test_access_control_refuses_a_public_secret_key_in_every_environment(app_config, secret):
    config = {**app_config, "API_TOKENS_FULL": "a-full-token", "ADMIN_PASSWORD_HASH": "scrypt:x"}
    config.pop("SECRET_KEY")
    if secret is not UNSET:
        config["SECRET_KEY"] = secret
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app(config)


def test_make_run_stays_open_without_credentials_and_with_the_development_key():
    settings = startup_settings({"PATH": os.environ.get("PATH", "")})
    assert not settings.access_control_enabled
    assert settings.secret_key == DEV_SECRET_KEY


def test_make_run_with_credentials_but_no_secret_key_fails_at_once_naming_it(database_url, servers):
    env = {key: value for key, value in os.environ.items() if key != "SECRET_KEY"}
    env.update(DATABASE_URL=database_url, REDIS_URL=servers.redis_url, PORT=str(free_port()),
               API_TOKENS_FULL="a-full-token", ADMIN_PASSWORD_HASH="scrypt:x")
    launcher = subprocess.Popen([sys.executable, "-m", "app.dev.server"], cwd=ROOT, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stdout, stderr = launcher.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        launcher.send_signal(signal.SIGTERM)  # it started everything: let it stop its children
        stdout, stderr = launcher.communicate()
    assert launcher.returncode == 1, stdout + stderr
    assert "refusing to start" in stderr and "SECRET_KEY" in stderr
    assert "serving" not in stdout
