"""Directory test helpers: listed sites written straight into the database (as the
owner role, like tests/factories.py), each test in its own tenant so searches can be
scoped to it with `tenant:` and never see another test's sites."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import asyncpg

from merci.db import Scope, set_scope
from tests.factories import person


async def new_tenant(conn: asyncpg.Connection) -> tuple[int, str]:
    slug = "dir-" + secrets.token_hex(4)
    tid = await conn.fetchval("insert into tenants (slug, name) values ($1, $1) returning id", slug)
    return int(tid), slug


async def listed_site(conn: asyncpg.Connection, tenant_id: int, owner_id: int, *, title: str,
                      description: str = "A site listed for tests.", language: str = "en", category: str = "text",
                      tags: Sequence[str] = (), listed_at: str | None = None) -> int:
    host = f"{secrets.token_hex(5)}.example"
    async with conn.transaction():
        await set_scope(conn, Scope(tenant_id))
        return int(await conn.fetchval(
            "insert into sites (tenant_id, owner_id, url, host, verification_token, verified_at, verification_method,"
            " listed, listed_at, title, description, language, category, tags)"
            " values ($1, $2, $3, $4, 'tok', now(), 'meta', true, coalesce($10::text::timestamptz, now()),"
            " $5, $6, $7, $8, $9)"
            " returning id",
            tenant_id, owner_id, f"https://{host}/", host, title, description, language, category, list(tags),
            listed_at))


__all__ = ["listed_site", "new_tenant", "person"]
