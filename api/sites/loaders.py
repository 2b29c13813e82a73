from __future__ import annotations

from datetime import date
from typing import Any

from strawberry.dataloader import DataLoader

from graph.context import Context


def visible_site_ids(ctx: Context) -> DataLoader[int, bool]:
    """Whether the caller may see each site: one statement for every reference of a
    request. The same rule as the directory's: RLS, then unlisted sites only for their
    owner and their tenant's admins and keys."""

    async def load(ids: list[int]) -> list[bool]:
        p = ctx.principal
        privileged = p.tenant_admin or p.platform_admin or p.api_key_id is not None
        async with ctx.tx() as conn:
            rows = await conn.fetch(
                "select id from sites where id = any($1::bigint[])"
                " and ((listed and verified_at is not null) or owner_id = $2 or $3)",
                ids, p.account_id, privileged)
        found = {r["id"] for r in rows}
        return [i in found for i in ids]

    return DataLoader(load_fn=load)


def site_clicks_in_period(ctx: Context, period: date) -> DataLoader[int, int]:
    """Clicks this month on each site's things, from the public counters, in one statement."""

    async def load(ids: list[int]) -> list[int]:
        async with ctx.tx() as conn:
            rows = await conn.fetch(
                "select t.site_id, sum(ts.clicks)::bigint as clicks from things t"
                " join thing_stats ts on ts.thing_id = t.id and ts.period = $2"
                " where t.site_id = any($1::bigint[]) group by t.site_id", ids, period)
        found: dict[int, Any] = {r["site_id"]: int(r["clicks"]) for r in rows}
        return [found.get(i, 0) for i in ids]

    return DataLoader(load_fn=load)
