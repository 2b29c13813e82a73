"""Connection pools, the tenant scope of a transaction, and the migration runner."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

import asyncpg

from merci import locks
from merci.config import APP_ROLE, SYSTEM_ROLE, Settings
from merci.errors import Unavailable


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


# When PostgreSQL cannot be reached, a caller learns it within these (settings
# db_connect_timeout, db_acquire_timeout): asyncpg's own default waits 60 s to connect and
# forever for a free connection, so an outage held every request until its client gave up.
CONNECT_TIMEOUT = 3.0
ACQUIRE_TIMEOUT = 5.0

# Raised while connecting (by the pool on acquire): the server is not there, refuses, or is
# starting or stopping. Anything raised here means "not now", never "your request is wrong".
_CONNECT_ERRORS = (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
                   asyncpg.TooManyConnectionsError)


class Pool(asyncpg.Pool):  # type: ignore[misc]  # (asyncpg is untyped)
    """asyncpg's pool with a default acquire timeout, whose failures to connect raise
    merci.errors.Unavailable("database"): the faces answer UNAVAILABLE, not a bare 500."""

    acquire_timeout: float | None = ACQUIRE_TIMEOUT

    async def _acquire(self, timeout: float | None) -> Any:
        try:
            return await super()._acquire(self.acquire_timeout if timeout is None else timeout)
        except _CONNECT_ERRORS as exc:
            raise Unavailable("database", str(exc) or type(exc).__name__) from exc


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10,
                      connect_timeout: float = CONNECT_TIMEOUT, acquire_timeout: float = ACQUIRE_TIMEOUT) -> Pool:
    """A pool of `dsn`'s connections: each connect gives up after `connect_timeout`, each
    acquire (connecting included) after `acquire_timeout` seconds."""
    pool = Pool(dsn, min_size=min_size, max_size=max_size, max_queries=50000,
                max_inactive_connection_lifetime=300.0, init=_init_connection, command_timeout=60,
                reset=_keep_session, loop=None, connection_class=asyncpg.Connection,
                record_class=asyncpg.Record, timeout=connect_timeout)
    pool.acquire_timeout = acquire_timeout
    try:
        return await pool  # type: ignore[no-any-return]
    except _CONNECT_ERRORS as exc:
        raise Unavailable("database", str(exc) or type(exc).__name__) from exc


@asynccontextmanager
async def scoped(pool: asyncpg.Pool, scope: Scope, *,
                 statement_timeout_ms: int | None = None) -> AsyncIterator[asyncpg.Connection]:
    """A transaction whose every statement runs under `scope`'s tenant and principal, and
    stops after `statement_timeout_ms` (None: the server's setting).

    set_config(..., true) is SET LOCAL: it dies with the transaction, so a pooled
    connection never carries one request's tenant (or timeout) into the next.
    """
    async with pool.acquire() as conn, conn.transaction():
        await set_scope(conn, scope, statement_timeout_ms=statement_timeout_ms)
        yield conn


# ------------------------------------------------------------------ migrations


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("merci") / "sql"
    names = sorted(p.name for p in folder.iterdir() if p.name[:4].isdigit() and p.name.endswith(".sql"))
    return [(n.removesuffix(".sql"), (folder / n).read_text()) for n in names]


class MigrationChanged(RuntimeError):
    """An applied migration's file no longer reads as it did when it was applied."""


def checksum(sql: str) -> str:
    return hashlib.sha256(sql.encode()).hexdigest()


async def migrate(dsn: str, settings: Settings | None = None) -> list[str]:
    """Apply pending migrations in order; a no-op when all are applied. `settings` says
    where dev money is on and the roles' passwords (None: development, none set).

    A shipped migration is never edited (merci/sql/README.md): a database that applied
    it earlier would silently never get the edit. So each applied version keeps the
    sha256 of its text, and a file that differs from it stops the run before anything
    is applied. Versions applied before checksums existed take the current files'
    (recorded once; this is pre-release, and 0013 brings their schema up to date).
    """
    settings = settings or Settings()
    files = migration_files()
    conn = await asyncpg.connect(dsn)
    applied_now: list[str] = []
    try:
        await conn.execute("select pg_advisory_lock($1)", locks.MIGRATIONS)
        # One transaction: a refused history leaves even schema_migrations as it was.
        async with conn.transaction():
            await conn.execute(
                "create table if not exists schema_migrations ("
                " version text primary key, applied_at timestamptz not null default now());"
                " alter table schema_migrations add column if not exists checksum text"
            )
            rows = await conn.fetch("select version, checksum from schema_migrations")
            recorded: dict[str, str | None] = {r["version"]: r["checksum"] for r in rows}
            _check_history(recorded, files)
            for version, sql in files:
                if version in recorded and recorded[version] is None:
                    await conn.execute("update schema_migrations set checksum = $2 where version = $1",
                                       version, checksum(sql))
        await _create_broker_tables(conn)
        for version, sql in files:
            if version in recorded:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("insert into schema_migrations (version, checksum) values ($1, $2)",
                                   version, checksum(sql))
            applied_now.append(version)
        await _grant_broker_to_workers(conn)
        await _set_role_passwords(conn, settings)
        await _set_dev_money(conn, settings)
    finally:
        await conn.execute("select pg_advisory_unlock($1)", locks.MIGRATIONS)
        await conn.close()
    return applied_now


def _check_history(recorded: dict[str, str | None], files: list[tuple[str, str]]) -> None:
    """Refuse to run when an applied migration's file changed or went missing."""
    current = {version: checksum(sql) for version, sql in files}
    problems = []
    for version, applied in sorted(recorded.items()):
        if version not in current:
            problems.append(f"merci/sql/{version}.sql was applied to this database but no longer exists")
        elif applied is not None and applied != current[version]:
            problems.append(f"merci/sql/{version}.sql changed after it was applied to this database"
                            f" (applied sha256 {applied[:12]}…, file now {current[version][:12]}…)")
    if problems:
        raise MigrationChanged(
            "; ".join(problems) + ". Shipped migrations are immutable: restore the file as it was"
            " and put the change in a new migration (merci/sql/README.md). Nothing was applied.")


async def _create_broker_tables(conn: asyncpg.Connection) -> None:
    """The PostgreSQL broker's tables, before the migrations: they grant on them, and
    0014 gives the API a function that enqueues into them."""
    from dramatiq_postgres import generate_init_sql

    if await conn.fetchval("select to_regclass('dramatiq.queue')") is None:
        async with conn.transaction():
            await conn.execute(generate_init_sql())


async def _grant_broker_to_workers(conn: asyncpg.Connection) -> None:
    """Workers consume, and send their own messages. Granted on every run, so that tables
    a newer broker adds reach them; the API's few rights are 0014's (it writes through
    merci_enqueue only)."""
    await conn.execute(
        f"grant usage on schema dramatiq to {SYSTEM_ROLE};"
        f" grant select, insert, update, delete on all tables in schema dramatiq to {SYSTEM_ROLE};"
        f" grant usage on all sequences in schema dramatiq to {SYSTEM_ROLE};"
        f" grant execute on all functions in schema dramatiq to {SYSTEM_ROLE};"
    )


async def _set_dev_money(conn: asyncpg.Connection, settings: Settings) -> None:
    """The `dev` payment provider may credit balances (free money) only in development and
    test (config.DEV_ENVIRONMENTS, the API's own rule): the database refuses it everywhere
    else (merci_dev_topup, migration 0016), whatever the API thinks."""
    if await conn.fetchval("select to_regclass('merci_settings')") is None:
        return  # (a partial history in a test)
    await conn.execute("update merci_settings set value = $1 where name = 'dev_money'",
                       "on" if settings.dev_env else "off")


async def _set_role_passwords(conn: asyncpg.Connection, settings: Settings) -> None:
    for role, password in ((APP_ROLE, settings.app_db_password), (SYSTEM_ROLE, settings.system_db_password)):
        if password:
            quoted = await conn.fetchval("select quote_literal($1)", password)
            await conn.execute(f"alter role {role} password {quoted}")


async def ping(conn: asyncpg.Connection) -> None:
    """One round trip: raises unless the database answers (readiness probes)."""
    await conn.fetchval("select 1")


async def fetch_dicts(conn: asyncpg.Connection, sql: str, *args: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(sql, *args)]


async def set_scope(conn: asyncpg.Connection, scope: Scope, *, statement_timeout_ms: int | None = None) -> None:
    """Switch the scope inside a transaction (e.g. creating a tenant's first admin); the
    statement timeout in the same round trip (empty: left as it is)."""
    await conn.execute(
        "select set_config('merci.tenant_id', $1, true), set_config('merci.account_id', $2, true),"
        " set_config('merci.platform_admin', $3, true),"
        " case when $4 = '' then null else set_config('statement_timeout', $4, true) end",
        str(scope.tenant_id), "" if scope.account_id is None else str(scope.account_id),
        "on" if scope.platform_admin else "off", "" if statement_timeout_ms is None else str(statement_timeout_ms),
    )
