"""Demo data for `merci dev`: two tenants, creators with verified sites and things,
funded supporters and a platform admin. Loaded once; a marker makes it idempotent."""

from __future__ import annotations

import asyncpg

from merci import accounts, budgets
from merci.config import Settings
from merci.db import Scope, set_scope
from merci.money import Money
from merci.payments import Charge

PASSWORD = "merci-demo-password"
ADMIN_EMAIL = "admin@merci.test"

CREATORS = [
    # tenant, handle, email, site, things
    ("merci", "alice", "alice@merci.test", "https://alice.example",
     [("https://alice.example/posts/hello-world", "Hello, world", "text"),
      ("https://alice.example/posts/cafe-culture", "Café culture in Lyon", "text")]),
    ("blogs", "bob", "bob@blogs.test", "https://bob.blogs.example",
     [("https://bob.blogs.example/podcast/1", "Open source podcast, episode 1", "audio"),
      ("https://bob.blogs.example/videos/rust", "Learning Rust", "video")]),
    ("merci", "chloe", "chloe@merci.test", "https://chloe.example",
     [("https://chloe.example/photos/alps", "Photos des Alpes", "images")]),
]
SUPPORTERS = [("merci", "dave", "dave@merci.test", 1000, 5000), ("blogs", "erin", "erin@blogs.test", 500, 2000)]


async def seeded(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("select 1 from accounts where handle = 'alice'"))


async def seed(conn: asyncpg.Connection, *, currency: str = "EUR") -> bool:
    """Seed inside one transaction on a merci_system (or owner) connection."""
    async with conn.transaction():
        if await seeded(conn):
            return False
        tenant = {"merci": await conn.fetchval("select id from tenants where slug = 'merci'")}
        tenant["blogs"] = await conn.fetchval(
            "insert into tenants (slug, name, fee_bps, partner_share_bps)"
            " values ('blogs', 'Blogs & Podcasts Inc.', 1000, 3000) returning id"
        )

        async def person(slug: str, handle: str, email: str) -> int:
            await set_scope(conn, Scope(tenant[slug]))
            account_id = await accounts.sign_up(
                conn, tenant_id=tenant[slug], email=email, password=PASSWORD, handle=handle
            )
            await accounts.mark_verified(conn, account_id=account_id)  # demo money moves at once
            return account_id

        admin = await person("merci", "platform_admin", ADMIN_EMAIL)
        await conn.execute(
            "update account_private set is_platform_admin = true, is_tenant_admin = true"
            " where account_id = $1", admin,
        )
        blogs_admin = await person("blogs", "blogs_admin", "admin@blogs.test")
        await conn.execute(
            "update account_private set is_tenant_admin = true where account_id = $1", blogs_admin
        )
        for slug, handle, email, site, things in CREATORS:
            owner = await person(slug, handle, email)
            host = site.split("://", 1)[1]
            site_id = await conn.fetchval(
                "insert into sites (tenant_id, owner_id, url, host, verification_token, verified_at,"
                " verification_method, listed, title, description, language, category, tags)"
                " values ($1, $2, $3, $4, md5(random()::text), now(), 'meta', true, $5, $6, $7, $8, $9)"
                " returning id",
                tenant[slug], owner, site, host, f"{handle.title()}'s site",
                f"Writing, audio and pictures by {handle}.", "fr" if handle == "chloe" else "en",
                things[0][2], ["demo", handle],
            )
            for url, title, category in things:
                await conn.execute(
                    "insert into things (tenant_id, owner_id, site_id, url, title, category, claimed_at)"
                    " values ($1, $2, $3, $4, $5, $6, now())",
                    tenant[slug], owner, site_id, url, title, category,
                )
        for slug, handle, email, budget, funds in SUPPORTERS:
            supporter = await person(slug, handle, email)
            await conn.execute(
                "insert into budget_changes (tenant_id, account_id, amount, currency) values ($1, $2, $3, $4)",
                tenant[slug], supporter, budget, currency,
            )
            await budgets.credit_topup(conn, tenant_id=tenant[slug], account_id=supporter,
                                       charge=Charge("demo", handle, Money(funds, currency)))
    return True


async def load(settings: Settings) -> bool:
    """The demo data, once (as merci_system): True when loaded now, False when already there."""
    conn = await asyncpg.connect(settings.system_database_url)
    try:
        return await seed(conn, currency=settings.currency)
    finally:
        await conn.close()
