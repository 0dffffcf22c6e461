"""Settings: docs/operations.md documents every one, and production refuses unsafe ones."""
from __future__ import annotations

import pytest

from app import create_app
from app.extensions import settings
from app.core.settings import SETTINGS, ConfigError, load_config, settings_table
from tests.helpers import OPERATIONS_PATH


def test_the_readme_table_lists_every_setting_with_its_default():
    text = OPERATIONS_PATH.read_text()
    table = settings_table()
    missing = [s.key for s in SETTINGS if f"| `{s.key}` |" not in text]
    assert not missing, f"{OPERATIONS_PATH.name} lacks settings {missing}"
    assert table in text, (f"the table in {OPERATIONS_PATH.name} differs from SETTINGS; replace it with the output of "
                           "`python -c 'from app.core.settings import settings_table; print(settings_table())'`:\n"
                           + table)


def test_every_default_is_documented_and_parses_from_its_own_text():
    for setting in SETTINGS:
        assert setting.doc, f"{setting.key} has no description"
        if setting.default is not None:
            assert load_config({setting.key: str(setting.default)})[setting.key] == setting.default


@pytest.mark.parametrize("secret", [None, "", "dev-insecure-secret"])
def test_production_refuses_to_start_without_a_real_secret_key(monkeypatch, database_url, secret):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("DATABASE_URL", database_url)
    if secret is None:
        monkeypatch.delenv("SECRET_KEY", raising=False)
    else:
        monkeypatch.setenv("SECRET_KEY", secret)
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app()


def test_production_starts_with_a_secret_key_and_credentials(monkeypatch, database_url):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SECRET_KEY", "a-long-random-value")
    monkeypatch.setenv("API_TOKENS_FULL", "a-token")
    monkeypatch.setenv("ADMIN_PASSWORD_HASH", "scrypt:hash")
    with create_app().app_context():
        assert settings().production


@pytest.mark.parametrize(("key", "value"), [("LOG_FORMAT", "xml"), ("LOG_LEVEL", "LOUD")])
def test_unknown_log_settings_are_refused(database_url, key, value):
    with pytest.raises(ConfigError, match=key):
        create_app({"DATABASE_URL": database_url, key: value})


def test_malformed_numbers_name_their_variable():
    with pytest.raises(ConfigError, match="READYZ_TIMEOUT_SECONDS"):
        load_config({"READYZ_TIMEOUT_SECONDS": "soon"})
