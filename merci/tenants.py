"""Tenants (partner platforms) and their API keys."""

from __future__ import annotations

import re
import secrets
from typing import Any

import asyncpg

from merci.accounts import hash_secret
from merci.errors import Checks, UserError
from merci.paging import Keyset

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$")
SCOPES = frozenset({"read", "things:write", "clicks:write", "sites:write", "webhooks:write", "analytics:read"})
DEFAULT_TENANT = "merci"


async def tenant_id_by_slug(conn: asyncpg.Connection, slug: str) -> int | None:
    value: int | None = await conn.fetchval("select id from tenants where slug = $1", slug)
    return value


async def default_tenant_id(conn: asyncpg.Connection) -> int:
    """The public site's tenant, in whose scope anonymous visitors read public rows."""
    found = await tenant_id_by_slug(conn, DEFAULT_TENANT)
    if found is None:
        raise RuntimeError(f"no tenant {DEFAULT_TENANT!r}: the migrations make it")
    return found


TENANT_COLUMNS = "id, slug, name, currency, fee_bps, partner_share_bps, created_at"


async def tenant_by_id(conn: asyncpg.Connection, *, tenant_id: int) -> dict[str, Any] | None:
    """A tenant's public face (tenants are public by policy)."""
    row = await conn.fetchrow(f"select {TENANT_COLUMNS} from tenants where id = $1", tenant_id)
    return None if row is None else dict(row)


def all_tenants() -> Keyset:
    """Every tenant, newest first: the platform admins' list. merci_app reads every row
    (policy read_all: a tenant's face is public), so the face decides who may list them."""
    return Keyset(f"select {TENANT_COLUMNS} from tenants where true", ())


class TenantIds:
    """Tenant ids by slug, each remembered once found (one per app: tenants are never
    renamed, so a slug names the same tenant for good; a slug not found is asked again)."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def known(self, slug: str) -> int | None:
        return self._ids.get(slug)

    async def get(self, conn: asyncpg.Connection, slug: str) -> int | None:
        found = self._ids.get(slug)
        if found is None:
            found = await tenant_id_by_slug(conn, slug)
            if found is not None:
                self._ids[slug] = found
        return found


def check_tenant(*, slug: str, name: str, fee_bps: int, partner_share_bps: int) -> str:
    """A new tenant's fields, every refusal at once; returns the slug as stored."""
    checks = Checks()
    slug = slug.strip().lower()
    if not SLUG_RE.match(slug):
        checks.refuse(UserError("INVALID_SLUG", "a slug is 3 to 40 lowercase letters, digits or dashes", "slug"))
    if not 1 <= len(name.strip()) <= 200:
        checks.refuse(UserError("INVALID_NAME", "a name has 1 to 200 characters", "name"))
    if not 0 <= fee_bps <= 5000:
        checks.refuse(UserError("INVALID_FEE", "feeBps is between 0 and 5000", "feeBps"))
    if not 0 <= partner_share_bps <= 10000:
        checks.refuse(UserError("INVALID_SHARE", "partnerShareBps is between 0 and 10000", "partnerShareBps"))
    checks.done()
    return slug


async def create_tenant(
    conn: asyncpg.Connection, *, slug: str, name: str, fee_bps: int = 1000, partner_share_bps: int = 0
) -> int:
    slug = check_tenant(slug=slug, name=name, fee_bps=fee_bps, partner_share_bps=partner_share_bps)
    if await tenant_id_by_slug(conn, slug) is not None:
        raise UserError("SLUG_TAKEN", "this slug is taken", "slug")
    try:
        async with conn.transaction():
            # merci_app may not write tenants: the function checks that the scope's
            # account is a platform admin (merci/sql/0014_least_privilege.sql).
            tenant_id: int = await conn.fetchval(
                "select merci_create_tenant($1, $2, $3, $4)", slug, name.strip(), fee_bps, partner_share_bps,
            )
    except asyncpg.UniqueViolationError as exc:
        raise UserError("SLUG_TAKEN", "this slug is taken", "slug") from exc
    return tenant_id


async def make_tenant_admin(conn: asyncpg.Connection, *, account_id: int) -> None:
    """Make an account its tenant's admin; the scope's account must be a platform admin
    (merci_make_tenant_admin checks it: merci_app cannot write admin flags itself)."""
    await conn.execute("select merci_make_tenant_admin($1)", account_id)


API_KEY_COLUMNS = "id, name, hint, scopes, created_at, revoked_at"  # never the secret's hash


def api_keys() -> Keyset:
    """The tenant's API keys (RLS: the caller's tenant), oldest first."""
    return Keyset(f"select {API_KEY_COLUMNS} from api_keys where true", (), descending=False)


async def api_key(conn: asyncpg.Connection, *, key_id: int) -> dict[str, Any] | None:
    """One of the tenant's API keys (RLS: only the caller's tenant's keys exist here)."""
    row = await conn.fetchrow(f"select {API_KEY_COLUMNS} from api_keys where id = $1", key_id)
    return None if row is None else dict(row)


async def create_api_key(
    conn: asyncpg.Connection, *, tenant_id: int, name: str, scopes: list[str], created_by: int | None
) -> tuple[int, str]:
    """Return (key id, secret). The secret is shown once; only its hash is stored."""
    checks = Checks()
    unknown = sorted(set(scopes) - SCOPES)
    if unknown:
        checks.refuse(UserError("UNKNOWN_SCOPE", f"unknown scopes: {', '.join(unknown)}", "scopes"))
    if not scopes:
        checks.refuse(UserError("NO_SCOPE", "give the key at least one scope", "scopes"))
    if not 1 <= len(name.strip()) <= 100:
        checks.refuse(UserError("INVALID_NAME", "a name has 1 to 100 characters", "name"))
    checks.done()
    secret = f"mk_{tenant_id}_{secrets.token_urlsafe(32)}"
    key_id: int = await conn.fetchval(
        "insert into api_keys (tenant_id, name, secret_hash, hint, scopes, created_by)"
        " values ($1, $2, $3, $4, $5, $6) returning id",
        tenant_id, name.strip(), hash_secret(secret), secret[-4:], sorted(set(scopes)), created_by,
    )
    return key_id, secret


async def revoke_api_key(conn: asyncpg.Connection, *, key_id: int) -> bool:
    status = await conn.execute(
        "update api_keys set revoked_at = now() where id = $1 and revoked_at is null", key_id
    )
    return bool(status.endswith(" 1"))
