"""The partner tables under row-level security, as the API's role: a tenant never
reads another's webhooks, grants or discoveries, never reads a signing secret back,
and cannot forge a linked account without a redeemed consent."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest

from merci import oauth, webhooks
from merci.accounts import hash_secret
from merci.db import Scope, scoped, set_scope
from tests.factories import TenantWorld, make_tenant_world

PRIVATE = ["webhook_endpoints", "webhook_events", "webhook_deliveries", "webhook_attempts", "embed_grants",
           "thing_discovery"]


@pytest.fixture(scope="module")
async def worlds(system_pool: asyncpg.Pool) -> tuple[TenantWorld, TenantWorld, dict[str, int]]:
    async with system_pool.acquire() as conn:
        a, b = await make_tenant_world(conn), await make_tenant_world(conn)
        async with conn.transaction():
            await set_scope(conn, Scope(b.tenant_id))
            endpoint, _ = await webhooks.create_endpoint(conn, tenant_id=b.tenant_id, url="https://b.example/hook",
                                                         events=["month.closed"])
            event = await conn.fetchval("insert into webhook_events (tenant_id, type, payload) values ($1,"
                                        " 'month.closed', '{}') returning id", b.tenant_id)
            delivery = await conn.fetchval("insert into webhook_deliveries (tenant_id, event_id, endpoint_id)"
                                           " values ($1, $2, $3) returning id", b.tenant_id, event, endpoint)
            await conn.execute("insert into webhook_attempts (tenant_id, delivery_id, attempt, status_code,"
                               " duration_ms) values ($1, $2, 1, 500, 3)", b.tenant_id, delivery)
            await conn.execute("insert into embed_grants (code_hash, tenant_id, account_id, expires_at)"
                               " values ($1, $2, $3, now() + interval '1 minute')", hash_secret("g"), b.tenant_id,
                               b.supporter_id)
            await conn.execute("insert into thing_discovery (thing_id, tenant_id) values ($1, $2)", b.thing_id,
                               b.tenant_id)
            client, _, _ = await oauth.create_client(conn, tenant_id=b.tenant_id, name="B app",
                                                     redirect_uris=["https://b.example/cb"], created_by=b.admin_id)
            # A's supporter linked to partner B.
            link = await conn.fetchval(
                "insert into linked_accounts (tenant_id, account_id, client_pk, scopes, token_hash)"
                " values ($1, $2, $3, '{clicks:write}', $4) returning id", b.tenant_id, a.supporter_id, client,
                hash_secret("ml_x"))
    return a, b, {"client": client, "link": link}


@pytest.mark.parametrize("table", PRIVATE)
async def test_a_never_reads_b(app_pool: asyncpg.Pool, worlds: tuple[TenantWorld, TenantWorld, dict[str, int]],
                               table: str) -> None:
    a, b, _ = worlds
    async with scoped(app_pool, Scope(a.tenant_id, a.admin_id)) as conn:
        assert await conn.fetchval(f"select count(*) from {table} where tenant_id = $1", b.tenant_id) == 0
    async with scoped(app_pool, Scope(b.tenant_id, b.admin_id)) as conn:
        assert await conn.fetchval(f"select count(*) from {table} where tenant_id = $1", b.tenant_id) > 0


async def test_secrets_stay_with_the_workers(app_pool: asyncpg.Pool,
                                             worlds: tuple[TenantWorld, TenantWorld, dict[str, int]]) -> None:
    _, b, _ = worlds
    async with scoped(app_pool, Scope(b.tenant_id, b.admin_id)) as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval("select secret from webhook_endpoints limit 1")


async def test_links_seen_by_both_parties_and_forged_by_neither(
        app_pool: asyncpg.Pool, worlds: tuple[TenantWorld, TenantWorld, dict[str, int]]) -> None:
    a, b, ids = worlds
    async with scoped(app_pool, Scope(a.tenant_id, a.supporter_id)) as conn:  # the supporter
        assert await conn.fetchval("select count(*) from linked_accounts where id = $1", ids["link"]) == 1
    async with scoped(app_pool, Scope(b.tenant_id, b.admin_id)) as conn:  # the partner
        assert await conn.fetchval("select count(*) from linked_accounts where id = $1", ids["link"]) == 1
    async with scoped(app_pool, Scope(a.tenant_id, a.admin_id)) as conn:  # anyone else
        assert await conn.fetchval("select count(*) from linked_accounts where id = $1", ids["link"]) == 0
    # Partner B inserting a link for A's creator, who never consented: refused by the policy.
    async with app_pool.acquire() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with conn.transaction():
                await set_scope(conn, Scope(b.tenant_id, b.admin_id))
                await conn.execute(
                    "insert into linked_accounts (tenant_id, account_id, client_pk, scopes, token_hash)"
                    " values ($1, $2, $3, '{clicks:write}', $4)", b.tenant_id, a.creator_id, ids["client"],
                    hash_secret("forged"))
    # A consent code is the supporter's own to write.
    async with app_pool.acquire() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with conn.transaction():
                await set_scope(conn, Scope(b.tenant_id, b.admin_id))
                await conn.execute(
                    "insert into oauth_codes (code_hash, tenant_id, client_pk, account_id, redirect_uri, scopes,"
                    " code_challenge, expires_at) values ($1, $2, $3, $4, 'https://b.example/cb', '{clicks:write}',"
                    " $5, now() + $6::interval)", hash_secret("c"), b.tenant_id, ids["client"], a.creator_id,
                    "x" * 43, timedelta(minutes=1))
