from __future__ import annotations

from typing import Any

from strawberry.dataloader import DataLoader

from graph.context import Context


def account_by_id(ctx: Context) -> DataLoader[int, dict[str, Any] | None]:
    """Public profiles; the accounts table is readable across tenants by policy."""

    async def load(ids: list[int]) -> list[dict[str, Any] | None]:
        async with ctx.tx() as conn:
            rows = await conn.fetch(
                "select id, tenant_id, handle, display_name, created_at from accounts"
                " where id = any($1::bigint[])",
                ids,
            )
        found = {r["id"]: dict(r) for r in rows}
        return [found.get(i) for i in ids]

    return DataLoader(load_fn=load)
