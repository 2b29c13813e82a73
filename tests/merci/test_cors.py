"""The CORS allowlist's domain (merci.cors, merci/sql/0019_cors_origins.sql): origins
written as browsers send them, MERCI_CORS_ORIGINS read once, tenants' lists changed only
by their admins (the database checks, whatever the API claims), and each process's view
of the lists."""

from __future__ import annotations

import asyncpg
import pytest

from merci import config, cors
from merci.cors import Allowlist, Listing
from merci.db import Scope, scoped, set_scope
from merci.errors import UserError
from merci.urls import normalize_origin
from tests.factories import TenantWorld, make_tenant_world


@pytest.mark.parametrize("given, origin", [
    ("https://App.Example", "https://app.example"),
    ("https://app.example:443/", "https://app.example"),
    ("  https://app.example:8443 ", "https://app.example:8443"),
    ("https://bücher.example", "https://xn--bcher-kva.example"),
    ("http://localhost:3000", "http://localhost:3000"),
    ("http://127.0.0.1:8123", "http://127.0.0.1:8123"),
    ("http://[::1]:80", "http://[::1]"),
    ("https://[2001:db8::1]:8443", "https://[2001:db8::1]:8443"),
])
def test_an_origin_is_written_as_browsers_send_it(given: str, origin: str) -> None:
    assert normalize_origin(given) == origin


@pytest.mark.parametrize("given, code", [
    ("*", "INVALID_ORIGIN"), ("null", "INVALID_ORIGIN"), ("", "INVALID_ORIGIN"), ("https://", "INVALID_ORIGIN"),
    ("https://*.example", "INVALID_ORIGIN"), ("https://app.example/path", "INVALID_ORIGIN"),
    ("https://app.example?x=1", "INVALID_ORIGIN"), ("https://user@app.example", "INVALID_ORIGIN"),
    ("ftp://app.example", "INVALID_ORIGIN"), ("https://app", "INVALID_ORIGIN"),
    ("https://a_b.example", "INVALID_ORIGIN"),
    ("https://app.example:99999", "INVALID_ORIGIN"), ("https://app\n.example", "INVALID_ORIGIN"),
    ("https://" + "a" * 300 + ".example", "INVALID_ORIGIN"),
    ("http://app.example", "INSECURE_ORIGIN"), ("http://10.0.0.1", "INSECURE_ORIGIN"),
])
def test_a_bad_origin_is_refused_with_a_reason(given: str, code: str) -> None:
    with pytest.raises(UserError) as err:
        normalize_origin(given)
    assert (err.value.code, err.value.field) == (code, "origin")


def test_configured_origins_are_read_once_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MERCI_CORS_ORIGINS", "https://App.example, http://localhost:3000\nhttps://app.example")
    monkeypatch.setenv("MERCI_CORS_MAX_AGE", "120")
    settings = config.load()
    assert settings.cors_origins == ("https://app.example", "http://localhost:3000")
    assert settings.cors_max_age == 120
    monkeypatch.delenv("MERCI_CORS_ORIGINS")
    assert config.load().cors_origins == ()
    for bad in ("*", "https://app.example/", "http://app.example"):
        monkeypatch.setenv("MERCI_CORS_ORIGINS", bad)
        if bad == "https://app.example/":
            assert config.load().cors_origins == ("https://app.example",)
            continue
        with pytest.raises(RuntimeError, match="MERCI_CORS_ORIGINS"):
            config.load()


def test_a_listing_takes_the_cookie_of_its_own_users_only() -> None:
    assert Listing(configured=True, tenants=frozenset()).takes_cookie_of(7)
    assert Listing(configured=False, tenants=frozenset({3, 7})).takes_cookie_of(7)
    assert not Listing(configured=False, tenants=frozenset({3})).takes_cookie_of(7)


# ---------------------------------------------------------------- the database's rules


@pytest.fixture(scope="module")
async def worlds(system_pool: asyncpg.Pool) -> tuple[TenantWorld, TenantWorld]:
    async with system_pool.acquire() as conn:
        return await make_tenant_world(conn), await make_tenant_world(conn)


async def _as(pool: asyncpg.Pool, scope: Scope, sql: str, *args: object) -> object:
    async with scoped(pool, scope) as conn:
        return await conn.fetchval(sql, *args)


async def test_only_a_tenant_admin_changes_its_own_tenants_list(
    app_pool: asyncpg.Pool, system_pool: asyncpg.Pool, worlds: tuple[TenantWorld, TenantWorld]
) -> None:
    a, b = worlds
    admin_a = Scope(a.tenant_id, a.admin_id)
    async with scoped(app_pool, admin_a) as conn:
        assert await cors.add_origin(conn, origin="https://App.A.example") == "https://app.a.example"
        assert await cors.add_origin(conn, origin="https://app.a.example") == "https://app.a.example"  # no-op
        assert await cors.tenant_origins(conn) == ["https://app.a.example"]
    # Anyone else is refused by the database itself: a supporter (even one claiming to be a
    # platform admin), an API key's scope (no account), b's admin acting in a's tenant.
    for scope in (Scope(a.tenant_id, a.supporter_id), Scope(a.tenant_id, a.supporter_id, platform_admin=True),
                  Scope(a.tenant_id), Scope(a.tenant_id, b.admin_id, platform_admin=True)):
        for sql in ("select merci_list_cors_origin('https://evil.example', true)",
                    "select merci_list_cors_origin('https://app.a.example', false)"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await _as(app_pool, scope, sql)
        async with scoped(app_pool, scope) as conn:
            with pytest.raises(UserError) as err:
                await cors.add_origin(conn, origin="https://evil.example")
            assert err.value.code == "FORBIDDEN"
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await _as(app_pool, scope, "insert into cors_origins (tenant_id, origin) values ($1, 'https://evil.example')",
                      a.tenant_id)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await _as(app_pool, scope, "delete from cors_origins")
    # Each tenant's rows are its own; the whole list only through merci_cors_origins().
    assert await _as(app_pool, Scope(b.tenant_id, b.admin_id), "select count(*) from cors_origins") == 0
    async with app_pool.acquire() as conn:
        rows = await conn.fetch("select origin, tenant_id from merci_cors_origins() where tenant_id = $1", a.tenant_id)
    assert [tuple(r) for r in rows] == [("https://app.a.example", a.tenant_id)]
    async with system_pool.acquire() as conn:
        assert await conn.fetchval("select count(*) from cors_origins where origin = 'https://evil.example'") == 0
    async with scoped(app_pool, admin_a) as conn:
        assert await cors.remove_origin(conn, origin="https://APP.a.example:443") == "https://app.a.example"
        with pytest.raises(UserError) as err:
            await cors.remove_origin(conn, origin="https://app.a.example")
        assert err.value.code == "NOT_FOUND"
        assert await cors.tenant_origins(conn) == []


async def test_a_tenant_lists_a_bounded_number_of_origins(
    app_pool: asyncpg.Pool, worlds: tuple[TenantWorld, TenantWorld]
) -> None:
    _, b = worlds
    async with scoped(app_pool, Scope(b.tenant_id, b.admin_id)) as conn:
        for i in range(cors.MAX_ORIGINS_PER_TENANT):
            await cors.add_origin(conn, origin=f"https://app{i}.b.example")
        await cors.add_origin(conn, origin="https://app0.b.example")  # already there: fine
        with pytest.raises(UserError) as err:
            await cors.add_origin(conn, origin="https://one-more.b.example")
        assert err.value.code == "TOO_MANY_ORIGINS"
        await conn.execute("select merci_list_cors_origin(origin, false) from cors_origins")


async def test_the_database_refuses_an_origin_written_otherwise(
    app_pool: asyncpg.Pool, worlds: tuple[TenantWorld, TenantWorld]
) -> None:
    """The table's own check, for a caller that skips normalize_origin."""
    a, _ = worlds
    for bad in ("*", "https://App.example", "https://app.example/", "http://app.example", "null"):
        with pytest.raises(asyncpg.CheckViolationError):
            await _as(app_pool, Scope(a.tenant_id, a.admin_id), "select merci_list_cors_origin($1, true)", bad)


async def test_a_process_sees_its_own_changes_at_once_and_others_within_the_ttl(
    app_pool: asyncpg.Pool, worlds: tuple[TenantWorld, TenantWorld]
) -> None:
    a, b = worlds
    mine, theirs = Allowlist(["https://web.example"], ttl=3600), Allowlist([], ttl=0)
    assert await mine.lookup(app_pool, "https://web.example") == Listing(True, frozenset())
    assert await mine.lookup(app_pool, "https://shared.example") is None
    for world in (a, b):
        async with scoped(app_pool, Scope(world.tenant_id, world.admin_id)) as conn:
            await cors.add_origin(conn, origin="https://shared.example")
    assert await mine.lookup(app_pool, "https://shared.example") is None  # read an hour ago, for all it knows
    assert await theirs.lookup(app_pool, "https://shared.example") == Listing(False, frozenset({a.tenant_id,
                                                                                               b.tenant_id}))
    mine.forget()  # what the mutations do in their own process
    assert await mine.lookup(app_pool, "https://shared.example") == Listing(False, frozenset({a.tenant_id,
                                                                                             b.tenant_id}))
    assert await mine.lookup(app_pool, "https://SHARED.example") is None  # the header as sent, exactly
    for world in (a, b):
        async with scoped(app_pool, Scope(world.tenant_id, world.admin_id)) as conn:
            await cors.remove_origin(conn, origin="https://shared.example")
    assert await theirs.lookup(app_pool, "https://shared.example") is None


async def test_without_the_database_only_the_configured_origins_pass(database_url: str) -> None:
    from merci.db import create_pool

    allowlist = Allowlist(["https://web.example"], ttl=0)
    pool = await create_pool(config.with_database(database_url, "merci_no_such_database"), min_size=0)
    try:
        assert await allowlist.lookup(pool, "https://web.example") == Listing(True, frozenset())
        assert await allowlist.lookup(pool, "https://app.example") is None
    finally:
        await pool.close()


async def test_the_scope_functions_see_the_account_not_the_claim(
    app_pool: asyncpg.Pool, worlds: tuple[TenantWorld, TenantWorld]
) -> None:
    a, _ = worlds
    async with app_pool.acquire() as conn, conn.transaction():
        await set_scope(conn, Scope(a.tenant_id, a.admin_id))
        with pytest.raises(asyncpg.InsufficientPrivilegeError):  # merci_app may not even ask
            await conn.fetchval("select merci_caller_is_tenant_admin()")
