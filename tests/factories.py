"""Raw-SQL factories: rows in every tenant-owned table, written as merci_system."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from merci import accounts, ledger, tenants
from merci.db import Scope, set_scope
from merci.money import Money


def token(prefix: str = "") -> str:
    return prefix + secrets.token_hex(4)


@dataclass
class TenantWorld:
    tenant_id: int
    slug: str
    admin_id: int
    creator_id: int
    supporter_id: int
    api_key_id: int
    api_key: str
    site_private_id: int
    site_public_id: int
    thing_id: int


async def make_tenant_world(conn: asyncpg.Connection, currency: str = "EUR") -> TenantWorld:
    """A tenant with an admin, a creator (one listed and one unverified site, a thing),
    a supporter (budget, balance, subscription, click) and an API key."""
    slug = token("t-")
    async with conn.transaction():
        tid = await conn.fetchval("insert into tenants (slug, name) values ($1, $1) returning id", slug)
        await set_scope(conn, Scope(tid))

        async def person(role: str) -> int:
            handle = token(role + "_")
            account_id = await accounts.sign_up(conn, tenant_id=tid, email=f"{handle}@example.org",
                                                password="long enough password", handle=handle)
            await accounts.mark_verified(conn, account_id=account_id)
            return account_id

        admin, creator, supporter = await person("admin"), await person("creator"), await person("fan")
        await conn.execute("update account_private set is_tenant_admin = true where account_id = $1", admin)
        await accounts.issue_token(conn, tenant_id=tid, account_id=supporter,
                                   ttl=timedelta(days=1))
        key_id, key = await tenants.create_api_key(conn, tenant_id=tid, name="k", scopes=["read"],
                                                   created_by=admin)
        site_private = await conn.fetchval(
            "insert into sites (tenant_id, owner_id, url, host, verification_token)"
            " values ($1, $2, $3, $4, 'tok') returning id",
            tid, creator, f"https://{slug}-private.example", f"{slug}-private.example")
        site_public = await conn.fetchval(
            "insert into sites (tenant_id, owner_id, url, host, verification_token, verified_at,"
            " verification_method, listed, title, description, language, category)"
            " values ($1, $2, $3, $4, 'tok', now(), 'meta', true, 'Public', 'A public site', 'en', 'text')"
            " returning id",
            tid, creator, f"https://{slug}.example", f"{slug}.example")
        thing = await conn.fetchval(
            "insert into things (tenant_id, owner_id, site_id, url, title, claimed_at)"
            " values ($1, $2, $3, $4, 'A thing', now()) returning id",
            tid, creator, site_public, f"https://{slug}.example/post")
        await conn.execute(
            "insert into budget_changes (tenant_id, account_id, amount, currency) values ($1, $2, 1000, $3)",
            tid, supporter, currency)
        sub = await conn.fetchval(
            "insert into subscriptions (tenant_id, supporter_id, thing_id, months, start_period)"
            " values ($1, $2, $3, 3, date_trunc('month', now())::date) returning id",
            tid, supporter, thing)
        await conn.execute(
            "insert into clicks (tenant_id, supporter_id, thing_id, period, accepted_at, idempotency_key,"
            " source, subscription_id) values ($1, $2, $3, date_trunc('month', now())::date, now(), $4,"
            " 'subscription', $5)",
            tid, supporter, thing, token("k"), sub)
        ext = await ledger.account_id(conn, kind="external", tenant_id=tid, currency=currency)
        bal = await ledger.account_id(conn, kind="supporter", tenant_id=tid, currency=currency,
                                      owner_account_id=supporter)
        await ledger.post(conn, tenant_id=tid, kind="topup", idem_key=token("topup:"),
                          lines=[(ext, Money(-5000, currency)), (bal, Money(5000, currency))])
    return TenantWorld(tid, slug, admin, creator, supporter, key_id, key, site_private, site_public, thing)


async def person(conn: asyncpg.Connection, tenant_id: int, role: str = "p", *, verified: bool = True) -> int:
    """An account; verified (its email proved) unless told otherwise, as a database from
    before migration 0022 has no such thing."""
    handle = token(role + "_")
    async with conn.transaction():
        await set_scope(conn, Scope(tenant_id))
        account_id = await accounts.sign_up(conn, tenant_id=tenant_id, email=f"{handle}@example.org",
                                            password="long enough password", handle=handle)
        if verified:
            await accounts.mark_verified(conn, account_id=account_id)  # the tests' accounts may move money
        return account_id


async def supporter(conn: asyncpg.Connection, tenant_id: int, *, budget: int | None, funds: int,
                    currency: str = "EUR", budget_at: str | None = None) -> int:
    from merci.budgets import credit_topup
    from merci.payments import Charge

    sid = await person(conn, tenant_id, "fan")
    if budget is not None:
        await conn.execute(
            "insert into budget_changes (tenant_id, account_id, amount, currency, created_at)"
            " values ($1, $2, $3, $4, coalesce($5::text::timestamptz, clock_timestamp()))",
            tenant_id, sid, budget, currency, budget_at)
    if funds:
        async with conn.transaction():
            await credit_topup(conn, tenant_id=tenant_id, account_id=sid,
                               charge=Charge("test", token(), Money(funds, currency)))
    return sid


async def verified_site(conn: asyncpg.Connection, owner_id: int, url: str, *, method: str = "well_known") -> int:
    """A site of `owner_id` proven by `method` (well_known: its whole host; meta: its path)."""
    from urllib.parse import urlsplit

    return int(await conn.fetchval(
        "insert into sites (tenant_id, owner_id, url, host, verification_token, verified_at, verification_method)"
        " select a.tenant_id, a.id, $2, $3, 'tok', now(), $4 from accounts a where a.id = $1"
        " on conflict (owner_id, url) do update set verified_at = coalesce(sites.verified_at, now()) returning id",
        owner_id, url, urlsplit(url).hostname, method))


async def thing(conn: asyncpg.Connection, tenant_id: int, owner_id: int | None, url: str | None = None) -> int:
    """A thing; owned things are owned by proof (a verified site of the owner covers it)."""
    from urllib.parse import urlsplit

    url = url or f"https://{token('site')}.example/{token('p')}"
    if owner_id is not None:
        parts = urlsplit(url)
        await verified_site(conn, owner_id, f"{parts.scheme}://{parts.netloc}/")
    thing_id = int(await conn.fetchval(
        "insert into things (tenant_id, url, title) values ($1, $2, 'thing') returning id", tenant_id, url))
    if owner_id is not None:  # (None: whoever's verified site covers it, or nobody)
        owner = await conn.fetchval("select owner_id from things where id = $1", thing_id)
        assert owner == owner_id, f"thing {url} belongs to {owner}, not {owner_id}: another site covers it"
    return thing_id


async def click(conn: asyncpg.Connection, tenant_id: int, supporter_id: int, thing_id: int, at: str) -> None:
    await conn.execute(
        "insert into clicks (tenant_id, supporter_id, thing_id, period, accepted_at, idempotency_key)"
        " values ($1, $2, $3, date_trunc('month', $4::text::timestamptz at time zone 'UTC')::date,"
        " $4::text::timestamptz, $5)",
        tenant_id, supporter_id, thing_id, at, token("k"))


async def merci_tenant(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("select id from tenants where slug = 'merci'"))
