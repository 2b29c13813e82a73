"""Connection pools, the tenant scope of a transaction, and the migration runner."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

import asyncpg

from merci.config import APP_ROLE, SYSTEM_ROLE

MIGRATION_LOCK = 7_310_001  # advisory lock id: one migrator at a time


@dataclass(frozen=True)
class Scope:
    """Who a transaction acts for. RLS policies read these settings."""

    tenant_id: int
    account_id: int | None = None
    platform_admin: bool = False


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A released connection's reset, after asyncpg's own (which rolls back an open
    transaction and drops listeners): nothing more. Nothing of ours leaves session state
    on a pooled connection (scopes are set_config(..., true), settings SET LOCAL, advisory
    locks transaction-level), so the default RESET ALL etc. would only cost every
    request one more round trip to PostgreSQL."""


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=60, reset=_keep_session
    )


@asynccontextmanager
async def scoped(pool: asyncpg.Pool, scope: Scope) -> AsyncIterator[asyncpg.Connection]:
    """A transaction whose every statement runs under `scope`'s tenant and principal.

    set_config(..., true) is SET LOCAL: it dies with the transaction, so a pooled
    connection never carries one request's tenant into the next.
    """
    async with pool.acquire() as conn, conn.transaction():
        await set_scope(conn, scope)
        yield conn


# ------------------------------------------------------------------ migrations


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("merci") / "sql"
    names = sorted(p.name for p in folder.iterdir() if p.name[:4].isdigit() and p.name.endswith(".sql"))
    return [(n.removesuffix(".sql"), (folder / n).read_text()) for n in names]


async def migrate(dsn: str) -> list[str]:
    """Apply pending migrations in order; a no-op when all are applied."""
    conn = await asyncpg.connect(dsn)
    applied_now: list[str] = []
    try:
        await conn.execute("select pg_advisory_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "create table if not exists schema_migrations ("
            " version text primary key, applied_at timestamptz not null default now())"
        )
        done = {r["version"] for r in await conn.fetch("select version from schema_migrations")}
        for version, sql in migration_files():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("insert into schema_migrations (version) values ($1)", version)
            applied_now.append(version)
        await _ensure_broker_schema(conn)
        await _set_role_passwords(conn)
    finally:
        await conn.execute("select pg_advisory_unlock($1)", MIGRATION_LOCK)
        await conn.close()
    return applied_now


async def _ensure_broker_schema(conn: asyncpg.Connection) -> None:
    """The PostgreSQL broker's tables; the API enqueues, workers consume."""
    from dramatiq_postgres import generate_init_sql

    exists = await conn.fetchval("select to_regclass('dramatiq.queue')")
    if exists is None:
        async with conn.transaction():
            await conn.execute(generate_init_sql())
    await conn.execute(
        f"grant usage on schema dramatiq to {APP_ROLE}, {SYSTEM_ROLE};"
        f" grant select, insert, update, delete on all tables in schema dramatiq to {APP_ROLE}, {SYSTEM_ROLE};"
        f" grant usage on all sequences in schema dramatiq to {APP_ROLE}, {SYSTEM_ROLE};"
        f" grant execute on all functions in schema dramatiq to {APP_ROLE}, {SYSTEM_ROLE};"
    )


async def _set_role_passwords(conn: asyncpg.Connection) -> None:
    for role, var in ((APP_ROLE, "MERCI_APP_DB_PASSWORD"), (SYSTEM_ROLE, "MERCI_SYSTEM_DB_PASSWORD")):
        password = os.environ.get(var)
        if password:
            quoted = await conn.fetchval("select quote_literal($1)", password)
            await conn.execute(f"alter role {role} password {quoted}")


async def fetch_dicts(conn: asyncpg.Connection, sql: str, *args: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(sql, *args)]


async def set_scope(conn: asyncpg.Connection, scope: Scope) -> None:
    """Switch the scope inside a transaction (e.g. creating a tenant's first admin)."""
    await conn.execute(
        "select set_config('merci.tenant_id', $1, true), set_config('merci.account_id', $2, true),"
        " set_config('merci.platform_admin', $3, true)",
        str(scope.tenant_id), "" if scope.account_id is None else str(scope.account_id),
        "on" if scope.platform_admin else "off",
    )
