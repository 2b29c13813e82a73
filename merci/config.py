"""Configuration from the environment, read once into a frozen object."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from merci.errors import UserError
from merci.urls import normalize_origin

APP_ROLE = "merci_app"
SYSTEM_ROLE = "merci_system"


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
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def production(self) -> bool:
        return self.env == "production"

    def derived(self) -> Settings:
        """Fill the role-specific URLs from DATABASE_URL when not given explicitly."""
        app = self.app_database_url or with_user(
            self.database_url, APP_ROLE, os.environ.get("MERCI_APP_DB_PASSWORD")
        )
        system = self.system_database_url or with_user(
            self.database_url, SYSTEM_ROLE, os.environ.get("MERCI_SYSTEM_DB_PASSWORD")
        )
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
    )
    if overrides:
        s = replace(s, **overrides)  # type: ignore[arg-type]
    if s.env == "production" and s.secret_key == "dev-secret-change-me":
        raise RuntimeError("MERCI_SECRET_KEY must be set in production")
    return s.derived() if s.database_url else s
