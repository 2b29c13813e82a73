"""Per-request DataLoaders of the directory subgraph: one statement per kind per request."""

from __future__ import annotations

from typing import Any

from strawberry.dataloader import DataLoader

from graph.context import Context
from merci import accounts, sites


def site_by_id(ctx: Context) -> DataLoader[int, dict[str, Any] | None]:
    """Sites the caller may see: RLS hides other tenants' unlisted sites, and within a
    tenant an unlisted site shows only to its owner and the tenant's admins and keys."""

    async def load(ids: list[int]) -> list[dict[str, Any] | None]:
        async with ctx.tx() as conn:
            found = await sites.visible_sites(conn, site_ids=ids, account_id=ctx.principal.account_id,
                                              tenant_wide=ctx.principal.tenant_wide)
        return [found.get(i) for i in ids]

    return DataLoader(load_fn=load)


def creator_by_id(ctx: Context) -> DataLoader[int, dict[str, Any] | None]:
    """Public profiles (accounts are readable by every tenant)."""

    async def load(ids: list[int]) -> list[dict[str, Any] | None]:
        async with ctx.tx() as conn:
            found = await accounts.profiles(conn, account_ids=ids)
        return [found.get(i) for i in ids]

    return DataLoader(load_fn=load)


def manages_sites(ctx: Context) -> bool:
    """May change any site of the caller's tenant: its admins, and its keys with `sites:write`."""
    p = ctx.principal
    if p.api_key_id is not None:
        return "sites:write" in p.scopes
    return p.tenant_admin or p.platform_admin


def can_see_private(ctx: Context, row: dict[str, Any]) -> bool:
    """Verification details (the token is a proof waiting to be put in place): whoever may
    change the site, i.e. its owner and its tenant's admins and `sites:write` keys. A
    `read` key sees its tenant's sites, not how to prove them."""
    p = ctx.principal
    if row["owner_id"] == p.account_id:
        return True
    return row["tenant_id"] == p.tenant_id and manages_sites(ctx)
