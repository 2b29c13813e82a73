"""The directory subgraph's queries: sites, categories and search."""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import Annotated, Any

import asyncpg
import strawberry

from directory.types import (
    Category,
    Site,
    SiteSearchConnection,
    SiteSort,
    category_names,
    precision,
)
from graph.context import Context, Info
from graph.errors import ClientError
from graph.fastpath import Decline, FastQuery
from graph.relay import Connection, Counter, Edge, check_first, connection_of, page_info, window
from merci import highlights, i18n, search, sites
from merci.config import Settings
from merci.errors import UserError
from merci.ids import from_global, to_global
from merci.sites import CATEGORIES, SITE_COLUMNS
from merci.tenants import TenantIds


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
    async def sites(self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
                    before: str | None = None) -> Connection[Site]:
        w = window(first, after, last, before)
        async with info.context.tx() as conn:
            page = await sites.listed().page(conn, w)
        return connection_of(page, lambda r: Site.from_row(dict(r)), cursor_of=lambda s: s.pk,
                             counter=Counter.of(info.context.tx, sites.count_listed))

    @strawberry.field(description="Flattr's categories, with how many listed sites each has.")
    async def categories(self, info: Info, lang: str = "en") -> list[Category]:
        names = category_names(i18n.negotiate(lang))
        async with info.context.tx() as conn:
            counts = await sites.listed_per_category(conn)
        return [Category(id=c, name=names[c], site_count=counts.get(c, 0)) for c in CATEGORIES]

    @strawberry.field(description="Search the directory: words (typos forgiven, accents and word endings "
                                   "ignored in English and French), filters, a sort and a page.")
    async def search_sites(
        self, info: Info, query: str | None = None, category: str | None = None, language: str | None = None,
        tenant: Annotated[str | None, strawberry.argument(description="A tenant's slug: its sites only.")] = None,
        sort: SiteSort = SiteSort.RELEVANCE, first: int | None = None, after: str | None = None,
        exact: Annotated[bool, strawberry.argument(description=(
            "Search the words as typed: no typos forgiven, the last word not completed; quotes, - and or "
            "work as in a web search engine (they also do without this)."))] = False,
    ) -> SiteSearchConnection:
        n = check_first(first)
        async with info.context.tx() as conn:
            try:
                q, page = await _search(conn, info.context.tenant_ids, query=query, category=category,
                                        language=language, tenant=tenant, sort=sort.value, first=n, after=after,
                                        exact=exact)
            except UserError as err:
                # Arguments, not input objects: a clear error on the field, not a payload.
                raise ClientError(err.message, err.code) from None
        edges = [Edge(cursor=c, node=Site.from_row(r)) for r, c in zip(page.rows, page.cursors, strict=True)]
        return SiteSearchConnection(
            edges=edges,
            page_info=page_info(page.cursors, page.has_next_page, after is not None),
            corrected_query=page.corrected_query, query=q, match=page.match, counting=[],
        )


async def _search(conn: asyncpg.Connection, tenant_ids: TenantIds, *, query: str | None, category: str | None,
                  language: str | None, tenant: str | None, sort: str, first: int, after: str | None,
                  columns: str = SITE_COLUMNS, exact: bool = False) -> tuple[search.SearchQuery, search.SearchPage]:
    tenant_id = None
    if tenant is not None:
        tenant_id = await tenant_ids.get(conn, tenant.strip().lower())
        if tenant_id is None:
            raise UserError("UNKNOWN_TENANT", f"no tenant {tenant!r}", "tenant")
    q = search.clean_query(text=query, category=category, language=language, sort=sort, tenant_id=tenant_id,
                           exact=exact)
    return q, await search.search(conn, q, first=first, after=after, columns=columns)


# ------------------------------------------------------------------ fast path

# searchSites is the directory's hottest query, and Strawberry's execution of a page of
# twenty sites costs several times the search itself. graph.fastpath answers it from a
# plan when the selection is plain fields of these (anything else goes through Strawberry).


# A Site's fields as the fast path writes them: a column as it is (orjson writes a
# datetime as Strawberry's DateTime serializes it), or a value computed from the row.
_PLAIN: dict[str, str] = {
    "url": "url", "host": "host", "listed": "listed", "title": "title", "description": "description",
    "language": "language", "category": "category", "tags": "tags", "feedUrl": "feed_url",
    "createdAt": "created_at", "listedAt": "listed_at",
}
_COMPUTED: dict[str, tuple[str, Callable[[dict[str, Any], Settings], Any]]] = {
    "id": ("id", lambda r, _: to_global("Site", r["id"])),
    "verified": ("verified_at", lambda r, _: r["verified_at"] is not None),
    "buttonUrl": ("url", lambda r, settings: sites.button_href(settings.public_url, r["url"])),
}
_SITE_FIELDS = _PLAIN.keys() | _COMPUTED.keys()
_COUNTED = frozenset({"totalCount", "totalCountPrecision", "facets", "countsAreEstimates"})
_HIGHLIGHTED = ("language", "title", "description")  # the columns highlights read


@functools.lru_cache(maxsize=256)
def site_columns(wanted: frozenset[str]) -> str:
    """The site columns a page of the `wanted` Site fields needs (id always): a page of
    twenty rows reads and decodes only what it shows (and highlights, what they read)."""
    needed = {"id", *(_PLAIN[name] for name in wanted & _PLAIN.keys()),
              *(_COMPUTED[name][0] for name in wanted & _COMPUTED.keys()),
              *(_HIGHLIGHTED if "highlights" in wanted else ())}
    return sites.columns_for(needed)


@functools.lru_cache(maxsize=256)
def _node_maker(wanted: frozenset[str]) -> Callable[[dict[str, Any], Settings], dict[str, Any]]:
    """row -> the `wanted` Site fields of its node: the plain columns picked in one go."""
    names = tuple(name for name in _PLAIN if name in wanted)
    columns = [_PLAIN[name] for name in names]
    pick: Callable[[dict[str, Any]], Any] = (
        operator.itemgetter(*columns) if len(columns) > 1 else lambda r: tuple(r[c] for c in columns))
    computed = [(name, get) for name, (_, get) in _COMPUTED.items() if name in wanted]

    def node(row: dict[str, Any], settings: Settings) -> dict[str, Any]:
        out = dict(zip(names, pick(row), strict=True))
        for name, get in computed:
            out[name] = get(row, settings)
        return out

    return node


async def search_sites_fast(ctx: Context, args: dict[str, Any], wanted: frozenset[str]) -> dict[str, Any]:
    """searchSites answered for graph.fastpath: the same search in one transaction, counts
    only when selected (`wanted`: the names of the fields selected). Any error is the
    client's (bad arguments): declined, so that Strawberry words it."""
    sort: SiteSort = args["sort"]  # coerced: the enum member, the argument's default when not given
    try:
        n = check_first(args.get("first"))
        async with ctx.tx() as conn:
            q, page = await _search(conn, ctx.tenant_ids, query=args.get("query"), category=args.get("category"),
                                    language=args.get("language"), tenant=args.get("tenant"),
                                    sort=sort.value, first=n, after=args.get("after"),
                                    columns=site_columns(wanted), exact=args.get("exact", False))
            counts = await search.facets(conn, q, page.match) if wanted & _COUNTED else None
            marked = await highlights.of_rows(conn, page.rows, page.match) if "highlights" in wanted else None
    except (UserError, ClientError):
        raise Decline from None
    make = _node_maker(wanted & _SITE_FIELDS)
    nodes = [make(r, ctx.settings) for r in page.rows]
    out: dict[str, Any] = {
        "edges": [{"cursor": c, "node": node} for c, node in zip(page.cursors, nodes, strict=True)],
        "nodes": nodes,
        "pageInfo": {"hasNextPage": page.has_next_page, "hasPreviousPage": args.get("after") is not None,
                     "startCursor": page.cursors[0] if page.cursors else None,
                     "endCursor": page.cursors[-1] if page.cursors else None},
        "correctedQuery": page.corrected_query,
    }
    if marked is not None:
        out["highlights"] = [{"site": to_global("Site", h.site_id),
                              "title": [{"start": a, "length": n} for a, n in h.title],
                              "description": [{"start": a, "length": n} for a, n in h.description]}
                             for h in marked]
    if counts is not None:
        out |= {"totalCount": counts.total, "countsAreEstimates": counts.estimated,
                "totalCountPrecision": precision(counts).name, "facets": {
            "categories": [{"value": v, "count": c} for v, c in counts.categories],
            "languages": [{"value": v, "count": c} for v, c in counts.languages]}}
    return out


FAST_QUERIES = {"searchSites": FastQuery(search_sites_fast, {
    "SiteSearchConnection": frozenset({"edges", "nodes", "pageInfo", "correctedQuery", "highlights", *_COUNTED}),
    "SearchHighlight": frozenset({"site", "title", "description"}),
    "TextRange": frozenset({"start", "length"}),
    "SiteEdge": frozenset({"cursor", "node"}),
    "Site": frozenset(_SITE_FIELDS),
    "PageInfo": frozenset({"hasNextPage", "hasPreviousPage", "startCursor", "endCursor"}),
    "SearchFacets": frozenset({"categories", "languages"}),
    "FacetCount": frozenset({"value", "count"}),
})}
