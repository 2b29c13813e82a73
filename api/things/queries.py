from __future__ import annotations

import strawberry

from api.things.types import Thing
from graph.context import Info
from merci import things
from merci.ids import from_global
from merci.urls import normalize_url


@strawberry.type
class ThingQueries:
    @strawberry.field(description="A thing by id.")
    async def thing(self, info: Info, id: strawberry.ID) -> Thing | None:
        _, pk = from_global(id, expect="Thing")
        return await Thing.load(info, pk)

    @strawberry.field(description="A thing by URL (normalized first); null if nobody submitted or clicked it yet.")
    async def thing_by_url(self, info: Info, url: str) -> Thing | None:
        normalized = normalize_url(url)  # a bad URL is a clear error, not a null
        async with info.context.tx() as conn:
            found = await things.thing_by_url(conn, normalized)
        return None if found is None else await Thing.load(info, found["id"])
