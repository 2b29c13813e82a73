from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.dataloader import DataLoader

from graph.context import Context, Info
from graph.relay import Node
from merci.ids import from_global, to_global

SITE_COLUMNS = (
    "id, tenant_id, owner_id, url, host, verified_at, listed, title, description, language,"
    " category, tags, feed_url, created_at"
)


def site_by_id(ctx: Context) -> DataLoader[int, dict[str, Any] | None]:
    async def load(ids: list[int]) -> list[dict[str, Any] | None]:
        async with ctx.tx() as conn:  # RLS: other tenants' unlisted sites are not here
            rows = await conn.fetch(
                f"select {SITE_COLUMNS} from sites where id = any($1::bigint[])", ids
            )
        found = {r["id"]: dict(r) for r in rows}
        return [found.get(i) for i in ids]

    return DataLoader(load_fn=load)


@strawberry.federation.type(keys=["id"], description="A creator's website.")
class Site(Node):
    id: strawberry.ID
    url: str
    host: str
    verified: bool
    listed: bool
    title: str | None
    description: str | None
    language: str | None
    category: str | None
    tags: list[str]
    feed_url: str | None
    created_at: datetime
    pk: strawberry.Private[int]

    @staticmethod
    def from_row(r: dict[str, Any]) -> Site:
        return Site(
            id=strawberry.ID(to_global("Site", r["id"])), pk=r["id"], url=r["url"], host=r["host"],
            verified=r["verified_at"] is not None, listed=r["listed"], title=r["title"],
            description=r["description"], language=r["language"], category=r["category"],
            tags=list(r["tags"]), feed_url=r["feed_url"], created_at=r["created_at"],
        )

    @staticmethod
    async def load(info: Info, pk: int) -> Site | None:
        row = await info.context.loader("site", site_by_id).load(pk)
        return Site.from_row(row) if row else None

    @classmethod
    async def resolve_reference(cls, info: Info, id: strawberry.ID) -> Site | None:
        _, pk = from_global(id, expect="Site")
        return await Site.load(info, pk)
