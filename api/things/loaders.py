from __future__ import annotations

from datetime import date
from typing import Any

from strawberry.dataloader import DataLoader

from graph.context import Context
from merci.things import THING_COLUMNS, visible_sql


def thing_by_id(ctx: Context) -> DataLoader[int, dict[str, Any] | None]:
    """Things the caller may see (hidden ones only to some, see visible_sql): every read
    of one thing goes through here, so thing(id:), node(id:), thingByUrl and entity
    references answer alike."""

    async def load(ids: list[int]) -> list[dict[str, Any] | None]:
        async with ctx.tx() as conn:
            rows = await conn.fetch(f"select {THING_COLUMNS} from things where id = any($1::bigint[])"
                                    f" and {visible_sql('$2')}", ids, ctx.principal.tenant_wide)
        found = {r["id"]: dict(r) for r in rows}
        return [found.get(i) for i in ids]

    return DataLoader(load_fn=load)


def clicks_in_period(ctx: Context, period: date) -> DataLoader[int, int]:
    """Public click counters of many things for one month, in one statement."""

    async def load(ids: list[int]) -> list[int]:
        async with ctx.tx() as conn:
            rows = await conn.fetch(
                "select thing_id, clicks from thing_stats where period = $1 and thing_id = any($2::bigint[])",
                period, ids)
        found = {r["thing_id"]: int(r["clicks"]) for r in rows}
        return [found.get(i, 0) for i in ids]

    return DataLoader(load_fn=load)
