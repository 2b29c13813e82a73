"""The directory subgraph's queries: sites, categories and search."""

from __future__ import annotations

from typing import Annotated

import strawberry

from directory.types import (
    CATEGORY_NAMES,
    Category,
    Site,
    SiteSearchConnection,
    SiteSort,
)
from graph.context import Info
from graph.errors import ClientError
from graph.relay import Connection, Edge, PageInfo, check_first, connection, decode_int_cursor
from merci import search
from merci.errors import UserError
from merci.ids import from_global
from merci.sites import CATEGORIES, SITE_COLUMNS


@strawberry.type
class DirectoryQueries:
    @strawberry.field(description="A site by id; null when not visible to you.")
    async def site(self, info: Info, id: strawberry.ID) -> Site | None:
        try:
            _, pk = from_global(id, expect="Site")
        except UserError as err:
            raise ClientError(err.message, err.code) from None
        return await Site.load(info, pk)

    @strawberry.field(description="Listed sites, newest first.")
    async def sites(self, info: Info, first: int | None = None, after: str | None = None) -> Connection[Site]:
        n = check_first(first)
        cursor = decode_int_cursor(after)
        async with info.context.tx() as conn:
            rows = await conn.fetch(
                f"select {SITE_COLUMNS} from sites where listed and verified_at is not null"
                " and ($1::bigint is null or id < $1) order by id desc limit $2",
                cursor, n + 1,
            )
        return connection([Site.from_row(dict(r)) for r in rows], first=n, cursor_of=lambda s: s.pk)

    @strawberry.field(description="Flattr's categories, with how many listed sites each has.")
    async def categories(self, info: Info, lang: str = "en") -> list[Category]:
        names = CATEGORY_NAMES.get(lang.strip().lower(), CATEGORY_NAMES["en"])
        async with info.context.tx() as conn:
            rows = await conn.fetch("select category, sum(n)::bigint as n from listing_counts group by 1")
        counts = {r["category"]: int(r["n"]) for r in rows}
        return [Category(id=c, name=names[c], site_count=counts.get(c, 0)) for c in CATEGORIES]

    @strawberry.field(description="Search the directory: words (typos forgiven, accents and word endings "
                                   "ignored in English and French), filters, a sort and a page.")
    async def search_sites(
        self, info: Info, query: str | None = None, category: str | None = None, language: str | None = None,
        tenant: Annotated[str | None, strawberry.argument(description="A tenant's slug: its sites only.")] = None,
        sort: SiteSort = SiteSort.RELEVANCE, first: int | None = None, after: str | None = None,
    ) -> SiteSearchConnection:
        n = check_first(first)
        async with info.context.tx() as conn:
            try:
                tenant_id = None
                if tenant is not None:
                    tenant_id = await conn.fetchval("select id from tenants where slug = $1", tenant.strip().lower())
                    if tenant_id is None:
                        raise UserError("UNKNOWN_TENANT", f"no tenant {tenant!r}", "tenant")
                q = search.clean_query(text=query, category=category, language=language, sort=sort.value,
                                       tenant_id=tenant_id)
                page = await search.search(conn, q, first=n, after=after)
            except UserError as err:
                # Arguments, not input objects: a clear error on the field, not a payload.
                raise ClientError(err.message, err.code) from None
        edges = [Edge(cursor=c, node=Site.from_row(r)) for r, c in zip(page.rows, page.cursors, strict=True)]
        return SiteSearchConnection(
            edges=edges,
            page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=edges[-1].cursor if edges else None),
            corrected_query=page.corrected_query, query=q, match=page.match, counting=[],
        )
