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


def attempts_by_delivery(ctx: Context) -> DataLoader[int, list[dict[str, Any]]]:
    """The attempts of a page of deliveries, in one statement."""

    async def load(ids: list[int]) -> list[list[dict[str, Any]]]:
        async with ctx.tx() as conn:  # RLS: the caller's tenant's deliveries only
            found = await webhooks.attempts(conn, delivery_ids=ids)
        return [found[i] for i in ids]

    return DataLoader(load_fn=load)
