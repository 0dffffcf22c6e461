"""Every setting of the service: one typed `Settings` object, read from the environment once.

`load_config()` reads the environment (never at import time, so tests and the
launcher can set it first) into a mapping keyed by variable name;
`Settings.from_mapping()` parses and checks it once. The application factory
builds one `Settings` and every adapter takes its values from it. Each entry
names its variable, its default and its meaning; docs/operations.md's configuration
table is rendered from this list (`settings_table()`).

Empty variables. A meaning the table gives to a particular value is written in one
form, `(empty: ...)`, `(unset: ...)` or `(0: ...)`, and holds as written
(tests/test_config.py tries each). A variable set to the empty string (or only
spaces) means what its entry's `(empty: ...)` says, and is then the empty
string (`RATE_LIMIT_READ=` is no limit); an entry that gives empty no meaning
takes its default, exactly as if the variable were unset (`PORT=` is 8080,
`EVENTS_RETENTION_DAYS=` keeps everything), so .env.example's blank lines are
harmless. Only text settings may give empty a meaning of its own.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from datetime import timedelta
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any

from limits import parse as parse_rate_limit

from .validation import InputBounds
from .windows import window_size


class ConfigError(ValueError):
    """A setting is missing or malformed; the process must not start."""


@dataclass(frozen=True)
class Setting:
    """One row of the configuration table: the variable, its default, how to parse it, what it means."""

    key: str
    default: Any
    parse: Callable[[str], Any] = str
    doc: str = ""

    @property
    def meanings(self) -> dict[str, str]:
        """The meanings the entry gives to particular values, by value: `empty`, `unset` or `0`."""
        return dict(MEANING.findall(self.doc))

    @property
    def empty_has_meaning(self) -> bool:
        """Whether an empty variable means something of its own (the empty string), not the default."""
        return "empty" in self.meanings


# How an entry states what a particular value means: `(empty: no limit)`, `(unset: ...)`, `(0: never)`.
MEANING = re.compile(r"\((empty|unset|0): ([^()]+)\)")


def _setting(key: str, default: Any, parse: Callable[[str], Any], doc: str) -> Any:
    setting = Setting(key, default, parse, doc)
    # An empty variable of a number cannot be parsed to anything; it can only mean the default.
    assert parse is str or not setting.empty_has_meaning, f"{key}: only a text setting may give empty a meaning"
    return field(default=default, metadata={"setting": setting})


DEV_SECRET_KEY = "dev-insecure-secret"
LOG_FORMATS = ("kv", "json")
ACCESS_CONTROL_MODES = ("auto", "on", "off")
# What a browser sends as `Origin`: scheme, host and an optional port, nothing else.
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


@dataclass(frozen=True)
class Settings:
    """The whole configuration, typed; attribute names are the variables' names in lower case."""

    app_env: str = _setting("APP_ENV", "development", str, "`production` turns on the start-up safety checks.")
    secret_key: str = _setting(
        "SECRET_KEY", DEV_SECRET_KEY, str,
        "Signs session cookies; must be a secret value in production and whenever access control is on.")
    database_url: str | None = _setting(
        "DATABASE_URL", None, str, "PostgreSQL URL for writes (and reads unless DATABASE_READ_URL is set).")
    database_read_url: str | None = _setting(
        "DATABASE_READ_URL", None, str,
        "Optional PostgreSQL replica URL that serves every read-only query (lists, exports, dashboard).")
    database_read_max_lag_seconds: float = _setting(
        "DATABASE_READ_MAX_LAG_SECONDS", 10.0, float,
        "Reads go back to the primary while the replica is down or further behind than this.")
    database_read_check_seconds: float = _setting(
        "DATABASE_READ_CHECK_SECONDS", 5.0, float,
        "How often each process checks the replica's health and lag.")
    database_pool_size: int = _setting(
        "DATABASE_POOL_SIZE", 5, int,
        "Connections kept per process; a web process also keeps one of its own for its group commit.")
    group_commit_max_events: int = _setting(
        "GROUP_COMMIT_MAX_EVENTS", 64, int,
        "Most single events (`POST /api/event`) a web process stores in one statement and one commit when "
        "requests arrive together; each is answered after that commit. 1: every event commits alone.")
    database_read_timeout_ms: int = _setting(
        "DATABASE_READ_TIMEOUT_MS", 5000, int,
        "statement_timeout of the reads web requests make: lists, exports, dashboard (0: no limit). A slower "
        "statement is cancelled and answered 503 `query_timeout`; writes and the calculation are not bound.")
    redis_url: str = _setting("REDIS_URL", "redis://127.0.0.1:6379/0", str,
                              "Redis URL for the job queue and the scheduler.")
    redis_namespace: str = _setting(
        "REDIS_NAMESPACE", "tracking", str,
        "Prefix of every queue and scheduler key, so several deployments can share one Redis.")
    redis_connect_timeout_seconds: float = _setting(
        "REDIS_CONNECT_TIMEOUT_SECONDS", 2.0, float,
        "How long the worker's and scheduler's client waits to connect to Redis.")
    redis_socket_timeout_seconds: float = _setting(
        "REDIS_SOCKET_TIMEOUT_SECONDS", 5.0, float,
        "How long the worker's and scheduler's client waits for a Redis answer.")
    redis_request_timeout_seconds: float = _setting(
        "REDIS_REQUEST_TIMEOUT_SECONDS", 0.5, float,
        "How long a web request waits for Redis (to connect, and for each command) before its job endpoint "
        "answers 503.")
    redis_breaker_seconds: float = _setting(
        "REDIS_BREAKER_SECONDS", 5.0, float,
        "After 3 Redis calls of web requests fail in a row, requests skip Redis for this long (job endpoints "
        "answer 503 at once, and so do sign-ins and recalculations, whose rate limits count their own "
        "failures); then one request tries it again.")
    port: int = _setting("PORT", 8080, int, "Port the web server listens on.")
    metrics_window_hours: int = _setting("METRICS_WINDOW_HOURS", 4, int,
                                         "Size of a metrics window in hours; must divide 24.")
    metrics_schedule: str = _setting("METRICS_SCHEDULE", "1 */4 * * *", str,
                                     "Cron expression (UTC) of the periodic calculation.")
    metrics_settle_seconds: int = _setting(
        "METRICS_SETTLE_SECONDS", 30, int,
        "A window counts as closed this long after its end, so in-flight writes land first.")
    metrics_chunk_windows: int = _setting(
        "METRICS_CHUNK_WINDOWS", 42, int,
        "Windows computed per transaction (and per hold of the calculation lock) during catch-up.")
    metrics_max_range_days: int = _setting(
        "METRICS_MAX_RANGE_DAYS", 366, int,
        "Longest `[from, till)` one explicit calculation request (API or CLI) may recompute.")
    metrics_job_timeout: int = _setting("METRICS_JOB_TIMEOUT", 1800, int,
                                        "Seconds a calculation job may run before RQ stops it.")
    metrics_job_retries: int = _setting("METRICS_JOB_RETRIES", 3, int, "Times a failed calculation job is retried.")
    metrics_job_result_ttl: int = _setting(
        "METRICS_JOB_RESULT_TTL", 24 * 3600, int,
        "Seconds a finished calculation job (and its summary) stays readable at /api/metrics/jobs/<id>.")
    metrics_job_failure_ttl: int = _setting("METRICS_JOB_FAILURE_TTL", 7 * 24 * 3600, int,
                                            "Seconds a failed calculation job stays readable.")
    events_retention_days: int | None = _setting(
        "EVENTS_RETENTION_DAYS", None, int,
        "Days of events kept: older day partitions are dropped and older events refused (unset: keep everything).")
    metrics_retention_days: int | None = _setting(
        "METRICS_RETENTION_DAYS", None, int,
        "Days of per-window metrics kept: older windows are deleted (unset: keep everything).")
    events_partitions_ahead_days: int = _setting(
        "EVENTS_PARTITIONS_AHEAD_DAYS", 7, int,
        "Days of event partitions the storage job keeps made ahead of time.")
    storage_schedule: str = _setting(
        "STORAGE_SCHEDULE", "17 * * * *", str,
        "Cron expression (UTC) of the storage job: partitions ahead, then retention.")
    log_level: str = _setting("LOG_LEVEL", "INFO", str, "Python log level.")
    log_format: str = _setting("LOG_FORMAT", "kv", str,
                               "`kv` (key=value) or `json`: one structured line per request and per job.")
    readyz_timeout_seconds: float = _setting(
        "READYZ_TIMEOUT_SECONDS", 0.8, float, "Deadline of the `/readyz` checks; a slower dependency counts as down.")
    prometheus_multiproc_dir: str | None = _setting(
        "PROMETHEUS_MULTIPROC_DIR", None, str,
        "Directory where the web workers keep Prometheus counters, so a scrape sums them all; set it "
        "(as an environment variable: the library reads it at import) whenever WEB_WORKERS > 1.")
    metrics_token: str = _setting(
        "METRICS_TOKEN", "", str,
        "Bearer token a Prometheus scrape of `/internal/metrics` must send (unset: open while access control "
        "is off, answered 404 once it is on).")
    prometheus_scrape_timeout_seconds: float = _setting(
        "PROMETHEUS_SCRAPE_TIMEOUT_SECONDS", 2.0, float,
        "How long a scrape of `/internal/metrics` waits for PostgreSQL and Redis before reporting them down.")
    web_host: str = _setting(
        "WEB_HOST", "127.0.0.1", str,
        "Address the web server binds (`make serve`): loopback unless told otherwise; compose sets `0.0.0.0`.")
    web_workers: int = _setting("WEB_WORKERS", 2, int, "Web server worker processes.")
    web_threads: int = _setting("WEB_THREADS", 4, int, "Threads per web worker that run the app.")
    web_graceful_timeout: int = _setting(
        "WEB_GRACEFUL_TIMEOUT", 25, int, "Seconds the web server lets in-flight requests finish after SIGTERM.")
    web_timeout: int = _setting(
        "WEB_TIMEOUT", 30, int, "Seconds a web worker may go without a heartbeat before it is killed and replaced.")
    web_header_timeout: float = _setting(
        "WEB_HEADER_TIMEOUT", 10.0, float, "Seconds a client has to send its request headers.")
    web_body_timeout: float = _setting(
        "WEB_BODY_TIMEOUT", 30.0, float,
        "Seconds a client has to send its request body (else 408), and to take more of a streamed answer.")
    web_worker_lifetime: int = _setting(
        "WEB_WORKER_LIFETIME", 6 * 3600, int, "Seconds after which a web worker is replaced, gracefully (0: never).")
    web_worker_max_rss_mib: int = _setting(
        "WEB_WORKER_MAX_RSS_MIB", 1024, int, "Memory (MiB) over which a web worker is replaced, gracefully (0: never).")
    web_worker_check_seconds: int = _setting(
        "WEB_WORKER_CHECK_SECONDS", 30, int,
        "How often the web workers' memory is checked against WEB_WORKER_MAX_RSS_MIB.")
    max_body_bytes: int = _setting("MAX_BODY_BYTES", 1024 * 1024, int, "Largest accepted request body.")
    metadata_max_bytes: int = _setting("METADATA_MAX_BYTES", 16 * 1024, int,
                                       "Largest accepted event metadata, JSON-encoded.")
    event_future_tolerance_seconds: int = _setting(
        "EVENT_FUTURE_TOLERANCE_SECONDS", 300, int, "How far in the future an event's occurred_at may lie.")
    event_max_age_days: int = _setting(
        "EVENT_MAX_AGE_DAYS", 365, int,
        "How far in the past an event's occurred_at may lie; each late event makes a window to recompute.")
    list_default_limit: int = _setting("LIST_DEFAULT_LIMIT", 100, int,
                                       "Page size of list endpoints when `limit` is not given.")
    list_max_limit: int = _setting("LIST_MAX_LIMIT", 1000, int, "Largest `limit` accepted by list endpoints.")
    list_max_metadata_filters: int = _setting(
        "LIST_MAX_METADATA_FILTERS", 10, int, "Most `meta.KEY=VALUE` filters one event list or export may carry.")
    rate_limit_ingest: str = _setting("RATE_LIMIT_INGEST", "1000 per second", str,
                                      "Budget per client for recording events (empty: no limit).")
    rate_limit_recalculate: str = _setting("RATE_LIMIT_RECALCULATE", "10 per minute", str,
                                           "Budget per client for triggering calculations (empty: no limit).")
    rate_limit_read: str = _setting(
        "RATE_LIMIT_READ", "20 per second", str,
        "Budget per client for reads: GET /api/events, /api/events/export, /api/metrics and the dashboard's "
        "lists and export (empty: no limit).")
    rate_limit_login: str = _setting("RATE_LIMIT_LOGIN", "10 per minute", str,
                                     "Budget per address for dashboard sign-in attempts (empty: no limit).")
    sign_in_free_failures: int = _setting(
        "SIGN_IN_FREE_FAILURES", 5, int,
        "Wrong passwords in a row a user name may get (from browsers that never signed in as it), or one "
        "browser that did, before each further attempt waits; the delay doubles from 1 s per failure.")
    sign_in_max_delay_seconds: int = _setting(
        "SIGN_IN_MAX_DELAY_SECONDS", 60, int,
        "The longest that delay grows; a success ends it, and an hour without failures forgets them.")
    rate_limit_redis_timeout_seconds: float = _setting(
        "RATE_LIMIT_REDIS_TIMEOUT_SECONDS", 0.25, float,
        "How long a sign-in or Recalculate budget check (and each sharing of the other counts) waits for Redis; "
        "a check that gets no answer refuses the request (503), as those routes need Redis anyway.")
    rate_limit_sync_ms: int = _setting(
        "RATE_LIMIT_SYNC_MS", 100, int,
        "How often each web process shares its ingestion and read budget counts through Redis. Those budgets "
        "are counted in the process, so a client may get past its limit by what other processes admitted "
        "in about two such intervals; sign-in and Recalculate budgets ask Redis on every request.")
    long_reads_per_process: int | None = _setting(
        "LONG_READS_PER_PROCESS", None, int,
        "Exports (API and dashboard) one web process streams at once (unset: half of WEB_THREADS); below "
        "WEB_THREADS, so the other threads stay free for writes. One more is answered 503 with Retry-After.")
    long_reads_per_client: int = _setting(
        "LONG_READS_PER_CLIENT", 1, int,
        "Exports one client (token, else address) may have streaming from one web process at once; one more "
        "is answered 429 with Retry-After.")
    trusted_proxies: int = _setting(
        "TRUSTED_PROXIES", 0, int,
        "Proxy hops in front of the app whose X-Forwarded-For/-Proto/-Host are believed, for the client address "
        "that rate limits key on (0: trust none). Compose sets 1 for its nginx.")
    trusted_proxy_addresses: str = _setting(
        "TRUSTED_PROXY_ADDRESSES", "127.0.0.1,::1", str,
        "Comma-separated addresses or networks (CIDR) of those proxies: forwarded headers from any other peer "
        "are ignored, so a client that reaches the web server directly cannot choose its address. Compose sets "
        "its nginx's fixed address.")
    access_control: str = _setting(
        "ACCESS_CONTROL", "auto", str,
        "`on`, `off`, or `auto`: on in production or once any token or admin password is set.")
    api_tokens_ingest: str = _setting("API_TOKENS_INGEST", "", str,
                                      "Comma-separated bearer tokens that may only record events.")
    api_tokens_full: str = _setting("API_TOKENS_FULL", "", str,
                                    "Comma-separated bearer tokens that may use the whole API.")
    admin_username: str = _setting("ADMIN_USERNAME", "admin", str, "Dashboard login name.")
    admin_password_hash: str = _setting("ADMIN_PASSWORD_HASH", "", str,
                                        "Dashboard password hash (the CLI's `hash-password` command makes one).")
    session_lifetime_seconds: int = _setting("SESSION_LIFETIME_SECONDS", 12 * 3600, int,
                                             "How long a dashboard sign-in lasts at most, however active.")
    session_idle_seconds: int = _setting(
        "SESSION_IDLE_SECONDS", 30 * 60, int,
        "A dashboard sign-in ends after this long without a request (checked on the server, in Redis).")
    allowed_hosts: str = _setting(
        "ALLOWED_HOSTS", "", str,
        "Comma-separated host names the service answers to while access control is off, besides localhost, "
        "127.0.0.1 and WEB_HOST (empty: only those); a `Host` header naming anything else gets 400, so a "
        "DNS-rebinding page cannot read an open service.")
    cors_allowed_origins: str = _setting(
        "CORS_ALLOWED_ORIGINS", "", str,
        "`;`-separated origins (`http://localhost:3000`) whose pages may call `/api/` from a browser, "
        "credentials included (empty: no CORS headers at all).")

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> Settings:
        """The settings named in `config` (by variable), the rest at their defaults; checked once."""
        values = {f.name: config[f.metadata["setting"].key] for f in fields(cls)
                  if f.metadata["setting"].key in config}
        settings = cls(**values)
        settings.check()
        return settings

    @property
    def window_size(self) -> timedelta:
        return timedelta(hours=self.metrics_window_hours)

    @property
    def settle(self) -> timedelta:
        return timedelta(seconds=self.metrics_settle_seconds)

    @property
    def future_tolerance(self) -> timedelta:
        return timedelta(seconds=self.event_future_tolerance_seconds)

    @property
    def max_event_age(self) -> timedelta:
        return timedelta(days=self.event_max_age_days)

    @property
    def max_calculation_range(self) -> timedelta:
        return timedelta(days=self.metrics_max_range_days)

    @cached_property
    def input_bounds(self) -> InputBounds:
        """The bounds every event is checked against; built once, since every POST needs them."""
        return InputBounds(metadata_max_bytes=self.metadata_max_bytes, future_tolerance=self.future_tolerance,
                           max_age=self.max_event_age, events_retention_days=self.events_retention_days)

    @property
    def production(self) -> bool:
        return self.app_env == "production"

    @cached_property  # read on every request
    def ingest_tokens(self) -> tuple[str, ...]:
        return split_tokens(self.api_tokens_ingest)

    @cached_property  # read on every request
    def full_tokens(self) -> tuple[str, ...]:
        return split_tokens(self.api_tokens_full)

    @cached_property  # read on every request
    def cors_origins(self) -> tuple[str, ...]:
        return split_origins(self.cors_allowed_origins)

    @property
    def open_mode_hosts(self) -> list[str]:
        """The host names an open service answers to (Flask's TRUSTED_HOSTS); ports are not compared."""
        bound = [] if self.web_host in ("0.0.0.0", "::", "") else [self.web_host]
        return ["localhost", "127.0.0.1", *bound, *split_tokens(self.allowed_hosts)]

    @cached_property
    def proxy_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        """TRUSTED_PROXY_ADDRESSES as networks (an address is a network of one)."""
        return tuple(ip_network(part, strict=False) for part in split_tokens(self.trusted_proxy_addresses))

    @property
    def long_read_slots(self) -> int:
        """Exports one web process streams at once: LONG_READS_PER_PROCESS, else half of WEB_THREADS."""
        if self.long_reads_per_process is not None:
            return self.long_reads_per_process
        return max(1, self.web_threads // 2)

    @cached_property  # read on every request
    def access_control_enabled(self) -> bool:
        """`on`/`off` as configured; `auto` means on in production or once any credential is set."""
        if self.access_control in ("on", "off"):
            return self.access_control == "on"
        return bool(self.ingest_tokens or self.full_tokens or self.admin_password_hash) or self.production

    def check(self) -> None:
        """Refuse settings that cannot work together; the message names the variable."""
        if not self.database_url:
            raise ConfigError("DATABASE_URL is not set (make run sets it for you; beside a running make run, use make cli).")
        try:
            window_size(self.metrics_window_hours)
        except ValueError:
            raise ConfigError(f"METRICS_WINDOW_HOURS={self.metrics_window_hours} must divide 24") from None
        for name in ("METRICS_CHUNK_WINDOWS", "METRICS_MAX_RANGE_DAYS", "EVENT_MAX_AGE_DAYS",
                     "LIST_MAX_METADATA_FILTERS", "GROUP_COMMIT_MAX_EVENTS", "WEB_WORKERS", "WEB_THREADS",
                     "WEB_WORKER_CHECK_SECONDS", "WEB_TIMEOUT", "WEB_HEADER_TIMEOUT", "WEB_BODY_TIMEOUT",
                     "SIGN_IN_FREE_FAILURES", "SIGN_IN_MAX_DELAY_SECONDS"):
            if getattr(self, name.lower()) < 1:
                raise ConfigError(f"{name}={getattr(self, name.lower())} must be at least 1")
        if not isinstance(logging.getLevelName(str(self.log_level).upper()), int):
            raise ConfigError(f"LOG_LEVEL={self.log_level!r} is not a log level such as INFO or DEBUG")
        for key, days in (("EVENTS_RETENTION_DAYS", self.events_retention_days),
                          ("METRICS_RETENTION_DAYS", self.metrics_retention_days)):
            if days is not None and days < 1:
                raise ConfigError(f"{key}={days} must be at least 1 (leave it unset to keep everything)")
        if self.database_read_max_lag_seconds <= 0 or self.database_read_check_seconds < 0:
            raise ConfigError("DATABASE_READ_MAX_LAG_SECONDS must be above 0 and DATABASE_READ_CHECK_SECONDS "
                              "at least 0")
        if self.events_partitions_ahead_days < 1:
            raise ConfigError(f"EVENTS_PARTITIONS_AHEAD_DAYS={self.events_partitions_ahead_days} must be at least 1")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"LOG_FORMAT={self.log_format!r} must be one of {', '.join(LOG_FORMATS)}")
        for budget in RATE_LIMITS:
            text = getattr(self, budget.lower())
            if text:
                try:
                    parse_rate_limit(text)
                except ValueError:
                    raise ConfigError(f"{budget}={text!r} is not a rate limit such as `10 per minute` "
                                      "(empty: no limit)") from None
        if self.rate_limit_sync_ms < 10:
            raise ConfigError(f"RATE_LIMIT_SYNC_MS={self.rate_limit_sync_ms} must be at least 10")
        for key, seconds in (("SESSION_LIFETIME_SECONDS", self.session_lifetime_seconds),
                             ("SESSION_IDLE_SECONDS", self.session_idle_seconds)):
            if seconds < 1:
                raise ConfigError(f"{key}={seconds} must be at least 1 second")
        for key in ("WEB_GRACEFUL_TIMEOUT", "WEB_WORKER_LIFETIME", "WEB_WORKER_MAX_RSS_MIB"):
            if getattr(self, key.lower()) < 0:
                raise ConfigError(f"{key}={getattr(self, key.lower())} must be 0 or more")
        if 0 < self.web_worker_lifetime < 60:
            raise ConfigError(f"WEB_WORKER_LIFETIME={self.web_worker_lifetime} must be 0 (never) or at least "
                              "60 seconds")
        if self.web_header_timeout > 60:
            raise ConfigError(f"WEB_HEADER_TIMEOUT={self.web_header_timeout:g} must be at most 60 seconds")
        if not 1 <= self.long_reads_per_client <= self.long_read_slots <= max(1, self.web_threads - 1):
            raise ConfigError(f"LONG_READS_PER_CLIENT={self.long_reads_per_client} and LONG_READS_PER_PROCESS="
                              f"{self.long_read_slots} must satisfy 1 <= per client <= per process < "
                              f"WEB_THREADS={self.web_threads}, so exports never hold every thread")
        if self.trusted_proxies < 0:
            raise ConfigError(f"TRUSTED_PROXIES={self.trusted_proxies} must be 0 (trust none) or more")
        try:
            self.proxy_networks
        except ValueError as exc:
            raise ConfigError(f"TRUSTED_PROXY_ADDRESSES={self.trusted_proxy_addresses!r}: {exc}") from None
        for origin in self.cors_origins:
            if not _ORIGIN.fullmatch(origin):
                raise ConfigError(f"CORS_ALLOWED_ORIGINS: {origin!r} is not an origin such as http://localhost:3000 "
                                  "(scheme, host and optional port; no path, no wildcard)")
        if self.access_control not in ACCESS_CONTROL_MODES:
            raise ConfigError(f"ACCESS_CONTROL={self.access_control!r} must be auto, on or off")
        if not self.secret_key:
            raise ConfigError("SECRET_KEY is empty: the dashboard's sessions (and CSRF tokens) need one")
        if self.secret_key == DEV_SECRET_KEY and (self.production or self.access_control_enabled):
            # The development default is public: whoever knows it can sign a session cookie that the
            # dashboard accepts as signed in. So wherever a sign-in protects something, refuse it.
            why = "APP_ENV=production" if self.production else "access control is on"
            raise ConfigError(f"SECRET_KEY must be set to a secret value when {why} (the default is public, so "
                              "anyone could sign a session cookie); make one with "
                              "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
        if self.access_control_enabled:
            problems = []
            if not self.full_tokens:
                problems.append("API_TOKENS_FULL is not set")
            if not self.admin_password_hash:
                problems.append("ADMIN_PASSWORD_HASH is not set (the CLI's `hash-password` command makes one)")
            if problems:
                raise ConfigError("access control is on but " + "; ".join(problems) + " (or set ACCESS_CONTROL=off)")


SETTINGS: tuple[Setting, ...] = tuple(f.metadata["setting"] for f in fields(Settings))
# The request budgets (`10 per minute`; empty: no limit), as app/http/rate_limits.py reads them.
RATE_LIMITS: tuple[str, ...] = tuple(s.key for s in SETTINGS if s.key.startswith("RATE_LIMIT_") and s.parse is str)


def split_tokens(value: str | None) -> tuple[str, ...]:
    return tuple(token.strip() for token in (value or "").split(",") if token.strip())


def split_origins(value: str | None) -> tuple[str, ...]:
    """The original's list format: origins separated by `;`, blanks ignored."""
    return tuple(origin.strip() for origin in (value or "").split(";") if origin.strip())


def load_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Every setting's value from the environment (or a given mapping), by variable name."""
    environ = os.environ if environ is None else environ
    config: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = environ.get(setting.key)
        if raw is None or not raw.strip():
            # Empty: what the table says empty means (the empty string), else the default, as if unset.
            config[setting.key] = "" if raw is not None and setting.empty_has_meaning else setting.default
            continue
        try:
            config[setting.key] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{setting.key}={raw!r} is not valid: {exc}") from None
    return config


def sqlalchemy_url(url: str) -> str:
    """Point a plain `postgresql://` URL at the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def settings_table() -> str:
    """docs/operations.md's configuration table, rendered from SETTINGS so the two cannot drift apart."""
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for setting in SETTINGS:
        default = "(unset)" if setting.default is None else f"`{setting.default}`"
        lines.append(f"| `{setting.key}` | {default} | {setting.doc.replace('|', '&#124;')} |")
    return "\n".join(lines)
