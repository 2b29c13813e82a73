from __future__ import annotations

from datetime import date
from typing import Any

from strawberry.dataloader import DataLoader

from graph.context import Context
from merci import things


def thing_by_id(ctx: Context) -> DataLoader[int, dict[str, Any] | None]:
    """Things the caller may see (hidden ones only to some, see visible_sql): every read
    of one thing goes through here, so thing(id:), node(id:), thingByUrl and entity
    references answer alike."""

    async def load(ids: list[int]) -> list[dict[str, Any] | None]:
        async with ctx.tx() as conn:
            found = await things.visible_things(conn, thing_ids=ids, tenant_wide=ctx.principal.tenant_wide)
        return [found.get(i) for i in ids]

    return DataLoader(load_fn=load)


def clicks_in_period(ctx: Context, period: date) -> DataLoader[int, int]:
    """Public click counters of many things for one month, in one statement."""

    async def load(ids: list[int]) -> list[int]:
        async with ctx.tx() as conn:
            found = await things.clicks_in_period(conn, thing_ids=ids, period=period)
        return [found.get(i, 0) for i in ids]

    return DataLoader(load_fn=load)
