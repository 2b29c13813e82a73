from __future__ import annotations

import strawberry

from directory.types import SITE_COLUMNS, Site
from graph.context import Info
from graph.relay import Connection, check_first, connection, decode_int_cursor
from merci.ids import from_global


@strawberry.type
class DirectoryQueries:
    @strawberry.field(description="A site by id; null when not visible to you.")
    async def site(self, info: Info, id: strawberry.ID) -> Site | None:
        _, pk = from_global(id, expect="Site")
        return await Site.load(info, pk)

    @strawberry.field(description="Listed sites, newest first.")
    async def sites(self, info: Info, first: int | None = None, after: str | None = None) -> Connection[Site]:
        n = check_first(first)
        cursor = decode_int_cursor(after)
        async with info.context.tx() as conn:
            rows = await conn.fetch(
                f"select {SITE_COLUMNS} from sites where listed and ($1::bigint is null or id < $1)"
                " order by id desc limit $2",
                cursor, n + 1,
            )
        return connection([Site.from_row(dict(r)) for r in rows], first=n, cursor_of=lambda s: s.pk)
