"""Isolation proven in the database: the application role, with tenant A set,
cannot read or write tenant B's private rows in any table, nor turn RLS off."""

from __future__ import annotations

import asyncpg
import pytest

from merci import config
from merci.db import Scope, scoped
from tests.factories import TenantWorld, make_tenant_world

PRIVATE_TABLES = ["account_private", "auth_tokens", "api_keys", "budget_changes", "subscriptions",
                  "clicks", "ledger_accounts", "journals", "entries"]
# Readable by every tenant by design (public profiles, things, counters, listed sites).
PUBLIC_TABLES = {"tenants", "accounts", "things", "thing_stats", "sites"}


@pytest.fixture(scope="module")
async def worlds(system_pool: asyncpg.Pool) -> tuple[TenantWorld, TenantWorld]:
    async with system_pool.acquire() as conn:
        return await make_tenant_world(conn), await make_tenant_world(conn)


async def test_every_table_has_forced_rls(app_pool: asyncpg.Pool) -> None:
    async with app_pool.acquire() as conn:
        rows = await conn.fetch(
            "select c.relname, c.relrowsecurity, c.relforcerowsecurity from pg_class c"
            " join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = 'public' and c.relkind = 'r' and c.relname <> 'schema_migrations'")
    assert rows, "no tables?"
    assert [r["relname"] for r in rows if not (r["relrowsecurity"] and r["relforcerowsecurity"])] == []
    tenant_tables = {r["relname"] for r in rows}
    assert set(PRIVATE_TABLES) | PUBLIC_TABLES <= tenant_tables


async def test_app_role_cannot_bypass(app_pool: asyncpg.Pool) -> None:
    async with app_pool.acquire() as conn:
        role = await conn.fetchrow(
            "select rolsuper, rolbypassrls, rolcreaterole from pg_roles where rolname = current_user")
        assert dict(role) == {"rolsuper": False, "rolbypassrls": False, "rolcreaterole": False}
        owned = await conn.fetchval(
            "select count(*) from pg_class where relowner = (select oid from pg_roles where rolname = current_user)")
        assert owned == 0
        for stmt in ["alter table clicks disable row level security",
                     "alter table clicks no force row level security",
                     "drop policy tenant_rows on clicks",
                     "set role merci_system",
                     "set session authorization postgres"]:
            with pytest.raises(asyncpg.PostgresError):
                await conn.execute(stmt)


@pytest.mark.parametrize("table", PRIVATE_TABLES)
async def test_tenant_a_cannot_read_or_write_b(
    app_pool: asyncpg.Pool, system_pool: asyncpg.Pool, worlds: tuple[TenantWorld, TenantWorld], table: str
) -> None:
    a, b = worlds
    async with system_pool.acquire() as conn:  # B's rows really exist
        assert await conn.fetchval(f"select count(*) from {table} where tenant_id = $1", b.tenant_id) > 0
    async with scoped(app_pool, Scope(a.tenant_id, a.supporter_id)) as conn:
        assert await conn.fetchval(f"select count(*) from {table} where tenant_id = $1", b.tenant_id) == 0
        assert await conn.fetchval(f"select count(*) from {table} where tenant_id = $1", a.tenant_id) > 0
        # No UPDATE grant at all on the ledger, on account_private (admin flags: 0014), nor on
        # clicks (only the ingestion worker writes them: 0016).
        if table not in ("journals", "entries", "ledger_accounts", "account_private", "clicks"):
            status = await conn.execute(f"update {table} set tenant_id = tenant_id where tenant_id = $1",
                                        b.tenant_id)
            assert status == "UPDATE 0"
    # Writing a row into B is refused by the policy's WITH CHECK.
    async with app_pool.acquire() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with conn.transaction():
                await conn.execute("select set_config('merci.tenant_id', $1, true)", str(a.tenant_id))
                await conn.execute(
                    "insert into budget_changes (tenant_id, account_id, amount, currency)"
                    " values ($1, $2, 500, 'EUR')", b.tenant_id, b.supporter_id)
    # No tenant set: nothing private at all.
    async with app_pool.acquire() as conn:
        assert await conn.fetchval(f"select count(*) from {table}") == 0


async def test_sites_private_until_listed(
    app_pool: asyncpg.Pool, worlds: tuple[TenantWorld, TenantWorld]
) -> None:
    a, b = worlds
    async with scoped(app_pool, Scope(a.tenant_id, a.supporter_id)) as conn:
        visible = {r["id"] for r in await conn.fetch("select id from sites where tenant_id = $1", b.tenant_id)}
        assert visible == {b.site_public_id}
        assert await conn.execute("update sites set listed = false where id = $1", b.site_public_id) == "UPDATE 0"
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("insert into things (tenant_id, url) values ($1, 'https://x.example/forged')",
                               b.tenant_id)


async def test_ledger_is_append_only_even_for_the_system_role(system_pool: asyncpg.Pool,
                                                              worlds: tuple[TenantWorld, TenantWorld]) -> None:
    async with system_pool.acquire() as conn:
        for stmt in ["update entries set amount = amount + 1", "delete from journals"]:
            with pytest.raises(asyncpg.PostgresError):
                await conn.execute(stmt)


async def test_unbalanced_or_dangling_entries_refused(system_pool: asyncpg.Pool,
                                                      worlds: tuple[TenantWorld, TenantWorld]) -> None:
    a, b = worlds
    async with system_pool.acquire() as conn:
        acct = await conn.fetchval("select id from ledger_accounts where tenant_id = $1 limit 1", a.tenant_id)
        insert = ("insert into entries (journal_id, ledger_account_id, tenant_id, amount, currency, journal_tenant_id)"
                  " values ($1, $2, $3, $4, 'EUR', $5)")
        for journal_ok, tenant, amount, error in [
            (True, a.tenant_id, 5, asyncpg.CheckViolationError),  # does not sum to zero
            (False, a.tenant_id, 5, asyncpg.ForeignKeyViolationError),  # no such journal
            (True, b.tenant_id, 5, asyncpg.ForeignKeyViolationError),  # not the account's tenant
        ]:
            with pytest.raises(error):
                async with conn.transaction():
                    j = await conn.fetchval("insert into journals (tenant_id, kind, idem_key) values ($1,"
                                            " 'correction', $2) returning id", a.tenant_id, f"bad-{amount}-{tenant}")
                    await conn.execute(insert, j if journal_ok else j + 1_000_000, acct, tenant, amount, a.tenant_id)


async def test_a_released_connection_keeps_no_scope(settings: config.Settings,
                                                    worlds: tuple[TenantWorld, TenantWorld]) -> None:
    """Pooled connections are released without asyncpg's RESET ALL (merci.db._keep_session):
    the scope is transaction-local, so the next borrower of the same connection starts with
    none, after a committed request and after a failed one alike, and sees no tenant's
    private rows."""
    from merci.db import create_pool

    a, _ = worlds
    pool = await create_pool(settings.app_database_url, max_size=1)
    try:
        async with scoped(pool, Scope(a.tenant_id, a.supporter_id)) as conn:
            assert await conn.fetchval("select current_setting('merci.tenant_id', true)") == str(a.tenant_id)
            assert await conn.fetchval("select count(*) from budget_changes") > 0
        with pytest.raises(asyncpg.DivisionByZeroError):
            async with scoped(pool, Scope(a.tenant_id, a.supporter_id)) as conn:
                await conn.fetchval("select 1 / 0")
        async with pool.acquire() as conn:  # the same connection: the pool holds one
            assert not conn.is_in_transaction()
            assert await conn.fetchval("select coalesce(current_setting('merci.tenant_id', true), '')") == ""
            assert await conn.fetchval("select count(*) from budget_changes") == 0
    finally:
        await pool.close()
