"""Configuration from the environment, read once into a frozen object.

This is the one module that reads the environment (tests/merci/test_config.py holds
the others to it): `load()` for the application's settings, which the composition root
(runtime/, workers/__init__.py) reads once and hands down, and `telemetry()` for logs
and traces, read on its own before them so that a process logs even a setting that
stops it. What reads its own variables is left to it: Dramatiq (`dramatiq_prom_*`,
its metrics' port and folder), OpenTelemetry's SDK (the exporter's endpoint, headers)
and TLS (`SSL_CERT_FILE`).
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field, replace
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from merci.errors import UserError
from merci.urls import normalize_origin

APP_ROLE = "merci_app"
SYSTEM_ROLE = "merci_system"

# MERCI_ENV is one of these; anything else (a typo: "prod", "Production") stops the start.
ENVIRONMENTS = ("development", "test", "staging", "production")
# The environments allowed what must never reach real users: the `dev` payment and payout
# providers (free money; the database agrees through `merci migrate`, merci.db), the schema
# read by anyone (introspection, `_service`) and GraphiQL. An allowlist, so that staging,
# or any environment added later, gets none of it until it is named here.
DEV_ENVIRONMENTS = frozenset({"development", "test"})


def with_user(dsn: str, user: str, password: str | None = None) -> str:
    """The same server and database as `dsn`, logged in as another role."""
    parts = urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    cred = quote(user) + (":" + quote(password) if password else "")
    return urlunsplit((parts.scheme, f"{cred}@{host}", parts.path, parts.query, parts.fragment))


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def database_name(dsn: str) -> str:
    return unquote(urlsplit(dsn).path.lstrip("/")) or "postgres"


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    database_url: str = ""  # the migration (owner) role
    app_database_url: str = ""  # merci_app: no table, no BYPASSRLS
    system_database_url: str = ""  # merci_system: workers and the month close
    # merci_app on a session of its own (LISTEN): PostgreSQL itself, not a transaction pooler
    listen_database_url: str = ""
    broker_url: str = ""  # empty: the PostgreSQL broker on database_url
    currency: str = "EUR"
    default_budget: int = 500
    min_budget: int = 200
    budget_presets: tuple[int, ...] = (200, 500, 1000, 2000)
    token_ttl_seconds: int = 30 * 24 * 3600
    close_grace_seconds: int = 3 * 3600
    escrow_hold_months: int = 3
    payout_threshold: int = 1000
    public_url: str = "http://127.0.0.1:8000"
    secret_key: str = "dev-secret-change-me"
    # Browser apps on other origins that may call /graphql with the user's cookie (the web
    # app's); partners list theirs per tenant (cors_origins). Preflights cached this long.
    cors_origins: tuple[str, ...] = ()
    cors_max_age: int = 600
    # Set on the roles by `merci migrate` (empty: left as they are).
    app_db_password: str = ""
    system_db_password: str = ""
    # Site verification and owner discovery may fetch loopback addresses (merci dev, tests).
    fetch_allow_loopback: bool = False
    fast_path: bool = True  # planned operations (graph.fastpath); off: every one through Strawberry
    auth_cache_seconds: float = 5.0  # resolved tokens kept this long (merci.accounts.PrincipalCache; 0: none)
    broker_heartbeat_ttl: float = 60.0  # seconds before a dead worker's messages go back to the queue
    # Accepted clicks still in the outbox this long after their batch was sent: its message
    # was lost (a broker restarted without its data), and the scheduler sends it again.
    click_resend_seconds: float = 300.0
    # Database gauges cached between scrapes; the ledger's imbalance (a full scan) longer,
    # and only where metrics_ledger is on; at most this many operation names as labels.
    metrics_cache_seconds: float = 10.0
    metrics_ledger_seconds: float = 300.0
    metrics_ledger: bool = True
    metrics_max_operations: int = 200
    # `merci serve`'s /metrics on a port of its own (graph.http_observability.MetricsPort);
    # 0: on the API's port in development and test, nowhere elsewhere.
    metrics_port: int = 0
    worker_metrics: bool = True  # a worker's metrics port (dramatiq_prom_port); off for many workers on one host
    # Webhook deliveries: Dramatiq's backoff and retries, and how often the outbox is polled.
    webhook_min_backoff_ms: int = 10_000
    webhook_max_backoff_ms: int = 3_600_000
    webhook_max_retries: int = 10  # ~3 hours of tries with the defaults
    webhook_poll_seconds: float = 1.0
    # Rate limits (merci.ratelimit): where their counters live, shared by every process
    # (redis://…; empty: BROKER_URL when it is Redis, else this process's memory, which
    # production and staging refuse); every limit's amount multiplied (the tests' own
    # fixtures only); limits by name replaced ("login.ip=30/minute signup.ip=5/minute;20/hour").
    rate_limit_url: str = ""
    rate_limit_multiplier: float = 1.0
    rate_limits: dict[str, str] = field(default_factory=dict)
    # A wrong password's lockout starts at this many seconds and doubles (merci.ratelimit).
    login_lockout_seconds: float = 60.0
    # Proxies (CIDRs) whose X-Forwarded-For names the client: the gateway's, the Ingress's.
    trusted_proxies: tuple[str, ...] = ()
    password_hash_threads: int = 2  # argon2 at once per process (64 MiB each), off the event loop
    # Click fraud (merci.fraud): who is new, how many clicks in an hour make a new account's
    # burst, how many accounts behind one address clicking one owner are too many; whether
    # the close scans its month once more at its start.
    fraud_fresh_days: int = 14
    fraud_burst_clicks: int = 20
    fraud_shared_address_accounts: int = 5
    fraud_screen_at_close: bool = True
    # Query cost (graph.cost, merci.throttle): refused above query_cost_limit per request;
    # each caller's bucket holds query_cost_bucket points and refills at the restore rate a
    # second (6,000 a minute), in the rate limits' storage. A statement's limit per request
    # (SET LOCAL statement_timeout in every transaction of a request).
    query_cost_limit: int = 1000
    query_cost_bucket: int = 2000
    query_cost_restore_rate: float = 100.0
    statement_timeout_ms: int = 5000
    # Outages (merci.db.Pool, graph.unavailable): how long to wait for PostgreSQL to accept a
    # connection, for a pooled connection (connecting included), and for a request's answer
    # to start; past them the answer is UNAVAILABLE (HTTP 503, Retry-After), not a wait.
    db_connect_timeout: float = 3.0
    db_acquire_timeout: float = 5.0
    request_deadline_seconds: float = 15.0
    # Mail (merci.mail): SMTP when smtp_host is set; otherwise only the dev mailbox, which
    # development and test have (/dev/mailbox) and production and staging do not (their
    # mail then waits in the outbox, and the worker says why).
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_security: str = "starttls"  # starttls, tls (implicit, port 465) or none
    smtp_timeout: float = 30.0
    mail_from: str = "Merci <no-reply@merci.invalid>"
    # Payments (merci.stripe_api, merci.topups, merci.sepa). No key: the `dev` providers
    # only (development and test). The API base is Stripe's unless a test points it at a
    # fake; a webhook older than the tolerance (seconds) is refused as a replay.
    stripe_api_key: str = ""
    stripe_webhook_secret: str = ""
    stripe_api_base: str = "https://api.stripe.com"
    stripe_webhook_tolerance: int = 300
    # Card top-ups: presets, bounds per top-up, and per calendar month (UTC) for accounts
    # younger than topup_new_account_days (stolen cards are tried on new accounts).
    topup_presets: tuple[int, ...] = (500, 1000, 2000, 5000)
    topup_min: int = 200
    topup_max: int = 100_000
    topup_new_account_days: int = 30
    topup_new_account_monthly: int = 10_000
    # SEPA credit transfers: who pays (the platform's account), for pain.001 files.
    sepa_debtor_name: str = ""
    sepa_debtor_iban: str = ""
    sepa_debtor_bic: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def dev_env(self) -> bool:
        """development or test: dev providers, introspection and GraphiQL (DEV_ENVIRONMENTS)."""
        return self.env in DEV_ENVIRONMENTS

    def derived(self) -> Settings:
        """Fill the role-specific URLs from DATABASE_URL when not given explicitly."""
        app = self.app_database_url or with_user(self.database_url, APP_ROLE, self.app_db_password)
        system = self.system_database_url or with_user(self.database_url, SYSTEM_ROLE, self.system_db_password)
        return replace(self, app_database_url=app, system_database_url=system,
                       listen_database_url=self.listen_database_url or app)


def cors_origins(text: str) -> tuple[str, ...]:
    """MERCI_CORS_ORIGINS: origins separated by commas or spaces; a bad one stops the start."""
    found: list[str] = []
    for item in re.split(r"[\s,]+", text.strip()):
        if item:
            try:
                found.append(normalize_origin(item))
            except UserError as err:
                raise RuntimeError(f"MERCI_CORS_ORIGINS: {item!r}: {err.message}") from err
    return tuple(dict.fromkeys(found))


def rate_limits(text: str) -> dict[str, str]:
    """MERCI_RATE_LIMITS: `name=limits` separated by spaces; a bad one stops the start."""
    found: dict[str, str] = {}
    for item in text.split():
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise RuntimeError(f"MERCI_RATE_LIMITS: {item!r}: write name=amount/period, e.g. login.ip=30/minute")
        found[name] = value
    return found


def trusted_proxies(text: str) -> tuple[str, ...]:
    """MERCI_TRUSTED_PROXIES: addresses or CIDRs separated by commas or spaces."""
    found: list[str] = []
    for item in re.split(r"[\s,]+", text.strip()):
        if item:
            try:
                found.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError as err:
                raise RuntimeError(f"MERCI_TRUSTED_PROXIES: {item!r} is not an address or CIDR") from err
    return tuple(found)


def smtp_security(text: str) -> str:
    """MERCI_SMTP_SECURITY: starttls, tls or none; anything else stops the start."""
    value = text.strip().lower()
    if value not in ("starttls", "tls", "none"):
        raise RuntimeError(f"MERCI_SMTP_SECURITY: {text!r} is not starttls, tls or none")
    return value


def load(**overrides: str) -> Settings:
    env = os.environ
    s = Settings(
        env=env.get("MERCI_ENV", "development"),
        database_url=env.get("DATABASE_URL", ""),
        app_database_url=env.get("MERCI_APP_DATABASE_URL", ""),
        system_database_url=env.get("MERCI_SYSTEM_DATABASE_URL", ""),
        listen_database_url=env.get("MERCI_LISTEN_DATABASE_URL", ""),
        broker_url=env.get("BROKER_URL", ""),
        currency=env.get("MERCI_CURRENCY", "EUR"),
        default_budget=int(env.get("MERCI_DEFAULT_BUDGET", "500")),
        close_grace_seconds=int(env.get("MERCI_CLOSE_GRACE_SECONDS", str(3 * 3600))),
        escrow_hold_months=int(env.get("MERCI_ESCROW_HOLD_MONTHS", "3")),
        payout_threshold=int(env.get("MERCI_PAYOUT_THRESHOLD", "1000")),
        public_url=env.get("MERCI_PUBLIC_URL", "http://127.0.0.1:8000"),
        secret_key=env.get("MERCI_SECRET_KEY", "dev-secret-change-me"),
        cors_origins=cors_origins(env.get("MERCI_CORS_ORIGINS", "")),
        cors_max_age=int(env.get("MERCI_CORS_MAX_AGE", "600")),
        app_db_password=env.get("MERCI_APP_DB_PASSWORD", ""),
        system_db_password=env.get("MERCI_SYSTEM_DB_PASSWORD", ""),
        fetch_allow_loopback=env.get("MERCI_FETCH_ALLOW_LOOPBACK", "").strip().lower() in {"1", "true", "yes", "on"},
        fast_path=env.get("MERCI_FAST_PATH", "1") != "0",
        auth_cache_seconds=float(env.get("MERCI_AUTH_CACHE_SECONDS", "5")),
        broker_heartbeat_ttl=float(env.get("MERCI_BROKER_HEARTBEAT_TTL", "60")),
        click_resend_seconds=float(env.get("MERCI_CLICK_RESEND_SECONDS", "300")),
        metrics_cache_seconds=float(env.get("MERCI_METRICS_CACHE_SECONDS", "10")),
        metrics_ledger_seconds=float(env.get("MERCI_METRICS_LEDGER_SECONDS", "300")),
        metrics_ledger=env.get("MERCI_METRICS_LEDGER", "1") != "0",
        metrics_max_operations=int(env.get("MERCI_METRICS_MAX_OPERATIONS", "200")),
        metrics_port=int(env.get("MERCI_METRICS_PORT", "0")),
        worker_metrics=env.get("MERCI_WORKER_METRICS", "1") != "0",
        webhook_min_backoff_ms=int(env.get("MERCI_WEBHOOK_MIN_BACKOFF_MS", "10000")),
        webhook_max_backoff_ms=int(env.get("MERCI_WEBHOOK_MAX_BACKOFF_MS", "3600000")),
        webhook_max_retries=int(env.get("MERCI_WEBHOOK_MAX_RETRIES", "10")),
        webhook_poll_seconds=int(env.get("MERCI_WEBHOOK_POLL_MS", "1000")) / 1000,
        query_cost_limit=int(env.get("MERCI_QUERY_COST_LIMIT", "1000")),
        query_cost_bucket=int(env.get("MERCI_QUERY_COST_BUCKET", "2000")),
        query_cost_restore_rate=float(env.get("MERCI_QUERY_COST_RESTORE_RATE", "100")),
        statement_timeout_ms=int(env.get("MERCI_STATEMENT_TIMEOUT_MS", "5000")),
        db_connect_timeout=float(env.get("MERCI_DB_CONNECT_TIMEOUT", "3")),
        db_acquire_timeout=float(env.get("MERCI_DB_ACQUIRE_TIMEOUT", "5")),
        request_deadline_seconds=float(env.get("MERCI_REQUEST_DEADLINE_SECONDS", "15")),
        smtp_host=env.get("MERCI_SMTP_HOST", ""),
        smtp_port=int(env.get("MERCI_SMTP_PORT", "587")),
        smtp_username=env.get("MERCI_SMTP_USERNAME", ""),
        smtp_password=env.get("MERCI_SMTP_PASSWORD", ""),
        smtp_security=smtp_security(env.get("MERCI_SMTP_SECURITY", "starttls")),
        smtp_timeout=float(env.get("MERCI_SMTP_TIMEOUT", "30")),
        mail_from=env.get("MERCI_MAIL_FROM", "Merci <no-reply@merci.invalid>"),
        stripe_api_key=env.get("STRIPE_API_KEY", ""),
        stripe_webhook_secret=env.get("STRIPE_WEBHOOK_SECRET", ""),
        stripe_api_base=env.get("STRIPE_API_BASE", "https://api.stripe.com"),
        stripe_webhook_tolerance=int(env.get("STRIPE_WEBHOOK_TOLERANCE", "300")),
        topup_new_account_days=int(env.get("MERCI_TOPUP_NEW_ACCOUNT_DAYS", "30")),
        topup_new_account_monthly=int(env.get("MERCI_TOPUP_NEW_ACCOUNT_MONTHLY", "10000")),
        topup_max=int(env.get("MERCI_TOPUP_MAX", "100000")),
        sepa_debtor_name=env.get("MERCI_SEPA_DEBTOR_NAME", ""),
        sepa_debtor_iban=env.get("MERCI_SEPA_DEBTOR_IBAN", ""),
        sepa_debtor_bic=env.get("MERCI_SEPA_DEBTOR_BIC", ""),
        rate_limit_url=env.get("MERCI_RATE_LIMIT_URL", ""),
        rate_limit_multiplier=float(env.get("MERCI_RATE_LIMIT_MULTIPLIER", "1")),
        rate_limits=rate_limits(env.get("MERCI_RATE_LIMITS", "")),
        login_lockout_seconds=float(env.get("MERCI_LOGIN_LOCKOUT_SECONDS", "60")),
        trusted_proxies=trusted_proxies(env.get("MERCI_TRUSTED_PROXIES", "")),
        password_hash_threads=int(env.get("MERCI_PASSWORD_HASH_THREADS", "2")),
        fraud_fresh_days=int(env.get("MERCI_FRAUD_FRESH_DAYS", "14")),
        fraud_burst_clicks=int(env.get("MERCI_FRAUD_BURST_CLICKS", "20")),
        fraud_shared_address_accounts=int(env.get("MERCI_FRAUD_SHARED_ADDRESS_ACCOUNTS", "5")),
        fraud_screen_at_close=env.get("MERCI_FRAUD_SCREEN_AT_CLOSE", "1") != "0",
    )
    if overrides:
        s = replace(s, **overrides)  # type: ignore[arg-type]
    if s.env not in ENVIRONMENTS:
        raise RuntimeError(f"MERCI_ENV={s.env!r} is not one of {', '.join(ENVIRONMENTS)}")
    if s.env == "production" and s.secret_key == "dev-secret-change-me":
        raise RuntimeError("MERCI_SECRET_KEY must be set in production")
    if s.stripe_api_key and not s.stripe_webhook_secret:
        raise RuntimeError("STRIPE_WEBHOOK_SECRET must be set with STRIPE_API_KEY: top-ups are credited by its webhook")
    if s.stripe_api_key.startswith("sk_live_") and s.env != "production":
        raise RuntimeError(f"STRIPE_API_KEY is a live key in {s.env}: use a test key (sk_test_...)")
    return s.derived() if s.database_url else s


@dataclass(frozen=True)
class Telemetry:
    """What logs and traces need (merci.observability)."""

    log_level: str = "INFO"
    log_format: str = "json"  # or console, for people
    # OpenTelemetry's own variables, which its SDK reads as well (the endpoint, headers):
    # Merci reads them to decide whether tracing is on, with which exporter and protocol,
    # and whether to name the service itself.
    otlp_endpoint: str = ""
    traces_exporter: str = "otlp"
    otlp_protocol: str = "grpc"
    otel_service_name: str = ""


def telemetry() -> Telemetry:
    env = os.environ
    return Telemetry(
        log_level=(env.get("MERCI_LOG_LEVEL") or "INFO").upper(),
        log_format=env.get("MERCI_LOG_FORMAT", "json").lower(),
        otlp_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or "",
        traces_exporter=env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower(),
        otlp_protocol=env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        otel_service_name=env.get("OTEL_SERVICE_NAME", ""),
    )
