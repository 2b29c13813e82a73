from __future__ import annotations

from datetime import date

from strawberry.dataloader import DataLoader

from graph.context import Context
from merci import sites


def visible_site_ids(ctx: Context) -> DataLoader[int, bool]:
    """Whether the caller may see each site: one statement for every reference of a
    request. The same rule as the directory's: RLS, then unlisted sites only for their
    owner and their tenant's admins and keys."""

    async def load(ids: list[int]) -> list[bool]:
        p = ctx.principal
        async with ctx.tx() as conn:
            found = await sites.visible_sites(conn, site_ids=ids, account_id=p.account_id,
                                              tenant_wide=p.tenant_wide, columns="id")
        return [i in found for i in ids]

    return DataLoader(load_fn=load)


def site_clicks_in_period(ctx: Context, period: date) -> DataLoader[int, int]:
    """Clicks this month on each site's things, from the public counters, in one statement."""

    async def load(ids: list[int]) -> list[int]:
        async with ctx.tx() as conn:
            found = await sites.clicks_in_period(conn, site_ids=ids, period=period)
        return [found.get(i, 0) for i in ids]

    return DataLoader(load_fn=load)
