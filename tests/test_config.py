"""Settings: docs/operations.md documents every one, each meaning it gives to empty, unset or 0 holds, and
production refuses unsafe ones."""
from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
from flask import Flask, request

from app import create_app, extensions
from app.extensions import settings
from app.core.settings import SETTINGS, ConfigError, Settings, load_config, settings_table
from tests.helpers import OPERATIONS_PATH, separate_app


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


# Meanings the table gives to particular values, as docs/operations.md shows them: `(empty: no limit)`.
# Read here on their own, not with the code's reader, so a meaning the code overlooks still gets tried.
STATED = re.compile(r"\((empty|unset|0): ([^()]+)\)")
# Parsed and checked only: no test of the meanings connects to this database.
ENVIRON = {"DATABASE_URL": "postgresql://settings-test@127.0.0.1/unused"}
# The variable as a test sets it for each stated case: the empty string, absent, or 0.
RAW = {"empty": "", "unset": None, "0": "0"}
DOCUMENTED = [(s.key, value, meaning) for s in SETTINGS for value, meaning in STATED.findall(s.doc)]
# The request budgets, `10 per minute` and the like.
RATE_LIMITS = [s.key for s in SETTINGS if s.key.startswith("RATE_LIMIT_") and s.parse is str]


def parsed(key: str, raw: str | None, **others: str) -> Settings:
    """The settings an environment with `key` set to `raw` (absent if None) yields, as the app would read it."""
    environ = {**ENVIRON, **others, **({} if raw is None else {key: raw})}
    return Settings.from_mapping(load_config(environ))


def test_the_table_states_what_empty_unset_or_0_mean_in_the_one_form_the_checks_read():
    """A meaning written any other way (`0 trusts none`, `Unset: ...`) would escape the checks below."""
    for setting in SETTINGS:
        prose = STATED.sub("", setting.doc)
        loose = re.findall(r"(?i)\b(?:empty|unset)\b|(?<![\w.])0(?::|\s+(?:trusts|means|disables|turns))", prose)
        assert not loose, (f"{setting.key} says what {loose} means outside the form `(empty: ...)`, `(unset: ...)` "
                           f"or `(0: ...)`: {setting.doc}")
    assert DOCUMENTED, "the table states no meaning at all: the reader above is broken"


@pytest.mark.parametrize("blank", ["", "  "])
def test_an_empty_variable_means_what_the_table_says_empty_means_else_its_default(blank):
    for setting in SETTINGS:
        value = load_config({setting.key: blank})[setting.key]
        if "(empty:" in setting.doc:
            assert value == "", f"{setting.key}={blank!r} should mean what the table says, not {value!r}"
        else:
            assert value == setting.default, f"{setting.key}={blank!r} should be its default, not {value!r}"


class Charged(BaseException):  # not an Exception, so no `except Exception` on the way can swallow it
    """A budget reached for its counts: it was charged."""


class Untouchable:
    """A runtime that only a budget which counts would touch."""

    def __getattr__(self, name: str) -> Any:
        raise Charged(name)


def _no_limit(key: str, config: Settings, fixtures: pytest.FixtureRequest) -> None:
    value = getattr(config, key.lower())
    if key in RATE_LIMITS:
        from app.http import rate_limits

        assert value == ""
        budgets = [b for b in vars(rate_limits).values()
                   if isinstance(b, rate_limits.Budget) and b.setting == key.lower()]
        assert budgets, f"no budget of app/http/rate_limits.py reads {key}, so it limits nothing whatever its value"
        defaults = parsed(key, None)
        for budget in budgets:
            with Flask(__name__).test_request_context(method=sorted(budget.methods)[0]):
                assert rate_limits.charge([budget], config, Untouchable()) is None  # type: ignore[arg-type]
                with pytest.raises(Charged):  # while the same request is charged at the default
                    rate_limits.charge([budget], defaults, Untouchable())  # type: ignore[arg-type]
    elif key == "DATABASE_READ_TIMEOUT_MS":
        assert value == 0
        app_config = fixtures.getfixturevalue("app_config")
        for setting, shown in ((value, "0"), (5000, "5s")):  # PostgreSQL's own 0 is no limit
            with separate_app({**app_config, key: setting}) as app, app.app_context():
                with extensions.database().read() as connection:
                    assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == shown
    else:
        pytest.fail(f"nothing here knows how {key} is consumed; add a check that it is no limit there")


def _never(key: str, config: Settings, _fixtures: pytest.FixtureRequest) -> None:
    from app.serving.server import build

    assert getattr(config, key.lower()) == 0
    # granian takes None for "no lifetime" / "no memory bound" and would refuse a lifetime of 0 s.
    attribute = {"WEB_WORKER_LIFETIME": "workers_lifetime", "WEB_WORKER_MAX_RSS_MIB": "workers_rss"}[key]
    assert getattr(build(config), attribute) is None
    assert getattr(build(parsed(key, None)), attribute) is not None


def _trust_none(key: str, config: Settings, _fixtures: pytest.FixtureRequest) -> None:
    from app.http import proxies

    def client_address(trusting: Settings) -> str:
        app = Flask(__name__)
        app.add_url_rule("/", "address", lambda: request.remote_addr or "")
        proxies.init_app(app, trusting)
        # A connection from the loopback address, where a proxy in front of the app would be.
        answer = app.test_client().get("/", headers={"X-Forwarded-For": "203.0.113.7"},
                                       environ_base={"REMOTE_ADDR": "127.0.0.1"})
        return answer.get_data(as_text=True)

    assert config.trusted_proxies == 0
    assert client_address(config) == "127.0.0.1"  # the connection's; the forwarded header changes nothing
    assert client_address(parsed(key, "1")) == "203.0.113.7"


def _no_cors_headers(key: str, config: Settings, fixtures: pytest.FixtureRequest) -> None:
    assert config.cors_origins == ()
    app_config = fixtures.getfixturevalue("app_config")
    origin = "http://localhost:3000"

    def cors_headers(origins: str) -> list[str]:
        with separate_app({**app_config, key: origins}) as app:
            client = app.test_client()
            answers = [client.get("/api/events", headers={"Origin": origin}),
                       client.options("/api/events", headers={"Origin": origin,
                                                              "Access-Control-Request-Method": "GET"})]
            return [name for answer in answers for name in answer.headers.keys()
                    if name.startswith("Access-Control-")]

    assert cors_headers(config.cors_allowed_origins) == []
    assert "Access-Control-Allow-Origin" in cors_headers(origin)


def _keep_everything(key: str, config: Settings, _fixtures: pytest.FixtureRequest) -> None:
    from app.jobs.storage import retention_policy
    from app.services.retention import oldest_computable_window

    now = datetime(2025, 10, 23, 13, tzinfo=timezone.utc)
    limit = {"EVENTS_RETENTION_DAYS": "events_before", "METRICS_RETENTION_DAYS": "metrics_before"}[key]
    assert getattr(config, key.lower()) is None
    assert getattr(retention_policy(config), limit)(now) is None
    assert oldest_computable_window(retention_policy(config), now) is None
    assert getattr(retention_policy(parsed(key, "30")), limit)(now) is not None


def _metrics_open_until_access_control(key: str, config: Settings, fixtures: pytest.FixtureRequest) -> None:
    assert config.metrics_token == ""
    app_config = {**fixtures.getfixturevalue("app_config"), key: config.metrics_token}
    protected = {"API_TOKENS_FULL": "full-token", "ADMIN_PASSWORD_HASH": "scrypt:unused"}
    for extra, status in (({}, 200), (protected, 404)):
        with separate_app({**app_config, **extra}) as app:
            assert app.test_client().get("/internal/metrics").status_code == status


def _only_its_own_names(key: str, config: Settings, fixtures: pytest.FixtureRequest) -> None:
    # app/__init__.py gives Flask `open_mode_hosts` as TRUSTED_HOSTS while access control is off.
    assert config.allowed_hosts == ""
    app_config = fixtures.getfixturevalue("app_config")

    def status(names: str, host: str) -> int:
        with separate_app({**app_config, key: names}) as app:
            return app.test_client().get("/api/events", headers={"Host": host}).status_code

    assert status(config.allowed_hosts, "localhost") == 200
    assert status(config.allowed_hosts, "tracking.lan") == 400
    assert status("tracking.lan", "tracking.lan") == 200


def _half_of_web_threads(key: str, config: Settings, _fixtures: pytest.FixtureRequest) -> None:
    # app/http/policy.py's pool of export slots takes its size from `long_read_slots`.
    assert getattr(config, key.lower()) is None
    assert config.long_read_slots == config.web_threads // 2
    assert parsed(key, None, WEB_THREADS="8").long_read_slots == 4


# What each stated meaning is checked by: the parsed value, and the code that reads it doing what was said.
MEANINGS: dict[str, Callable[[str, Settings, pytest.FixtureRequest], None]] = {
    "no limit": _no_limit,
    "never": _never,
    "trust none": _trust_none,
    "no CORS headers at all": _no_cors_headers,
    "keep everything": _keep_everything,
    "open while access control is off, answered 404 once it is on": _metrics_open_until_access_control,
    "half of WEB_THREADS": _half_of_web_threads,
    "only those": _only_its_own_names,
}


@pytest.mark.parametrize(("key", "value", "meaning"), DOCUMENTED,
                         ids=[f"{key}-{value}" for key, value, _ in DOCUMENTED])
def test_each_meaning_the_table_gives_to_empty_unset_or_0_holds(key, value, meaning, request):
    check = MEANINGS.get(meaning)
    assert check is not None, f"{key} says `({value}: {meaning})` and nothing checks it: add a check to MEANINGS"
    check(key, parsed(key, RAW[value]), request)
    if value == "unset":  # an empty variable whose entry gives empty no meaning is the default: unset
        check(key, parsed(key, ""), request)


@pytest.mark.parametrize("text", ["0", "none", "unlimited", "10 a minute"])
def test_a_rate_limit_that_is_no_rate_limit_is_refused_at_start_not_at_the_first_request(text):
    for key in RATE_LIMITS:
        with pytest.raises(ConfigError, match=f"^{key}="):
            parsed(key, text)
