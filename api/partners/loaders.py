from __future__ import annotations

from typing import Any

from strawberry.dataloader import DataLoader

from graph.context import Context


def endpoint_by_id(ctx: Context) -> DataLoader[int, dict[str, Any] | None]:
    """Webhook endpoints (never their secrets: the API role cannot read that column)."""

    async def load(ids: list[int]) -> list[dict[str, Any] | None]:
        async with ctx.tx() as conn:  # RLS: the caller's tenant's endpoints only
            rows = await conn.fetch(
                "select id, url, events, description, active, created_at, disabled_at from webhook_endpoints"
                " where id = any($1::bigint[])", ids)
        found = {r["id"]: dict(r) for r in rows}
        return [found.get(i) for i in ids]

    return DataLoader(load_fn=load)
