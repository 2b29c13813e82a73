from __future__ import annotations

from typing import Any

from strawberry.dataloader import DataLoader

from graph.context import Context
from merci import accounts


def account_by_id(ctx: Context) -> DataLoader[int, dict[str, Any] | None]:
    """Public profiles; the accounts table is readable across tenants by policy."""

    async def load(ids: list[int]) -> list[dict[str, Any] | None]:
        async with ctx.tx() as conn:
            found = await accounts.profiles(conn, account_ids=ids)
        return [found.get(i) for i in ids]

    return DataLoader(load_fn=load)
