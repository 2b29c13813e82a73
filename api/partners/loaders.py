from __future__ import annotations

from typing import Any

from strawberry.dataloader import DataLoader

from graph.context import Context
from merci import webhooks


def endpoint_by_id(ctx: Context) -> DataLoader[int, dict[str, Any] | None]:
    """Webhook endpoints (never their secrets: the API role cannot read that column)."""

    async def load(ids: list[int]) -> list[dict[str, Any] | None]:
        async with ctx.tx() as conn:  # RLS: the caller's tenant's endpoints only
            found = await webhooks.endpoints_by_id(conn, endpoint_ids=ids)
        return [found.get(i) for i in ids]

    return DataLoader(load_fn=load)
