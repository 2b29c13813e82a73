"""The directory subgraph's types: the Site entity (owned here), the directory's
contribution to the Creator entity (`sites`), verification and search results."""

from __future__ import annotations

import asyncio
from datetime import datetime
from enum import Enum
from typing import Any

import strawberry

from directory.loaders import can_see_private, creator_by_id, site_by_id
from graph.context import Info
from graph.relay import Connection, CountPrecision, Edge, Node, PageInfo, paginate_each, window
from merci import highlights, i18n, search, sites
from merci.i18n import N_
from merci.ids import from_global, to_global


@strawberry.enum(description="Where a site's proof of ownership stands.")
class VerificationStatus(Enum):
    UNVERIFIED = "unverified"
    PENDING = "pending"
    VERIFIED = "verified"
    FAILED = "failed"


@strawberry.enum(description="How a site proved its ownership.")
class VerificationMethod(Enum):
    META = "meta"
    LINK = "link"
    WELL_KNOWN = "well_known"


@strawberry.type(description="How to prove that a site is yours, and how the last check went. "
                             "Only its owner and its tenant's admins see it.")
class SiteVerification:
    status: VerificationStatus
    method: VerificationMethod | None
    token: str
    meta_tag: str = strawberry.field(description="Put this in the <head> of the site's home page…")
    link_tag: str = strawberry.field(description="…or this link to your Merci page…")
    well_known_url: str = strawberry.field(description="…or serve a file at this URL…")
    well_known_content: str = strawberry.field(description="…containing this line.")
    error: str | None = strawberry.field(description="Why the last check failed.")
    requested_at: datetime | None
    checked_at: datetime | None

    @staticmethod
    def of(row: dict[str, Any], handle: str, public_url: str) -> SiteVerification:
        p = sites.proofs(token=row["verification_token"], url=row["url"], handle=handle, public_url=public_url)
        requested, checked = row["verification_requested_at"], row["verification_checked_at"]
        if requested is not None and (checked is None or checked < requested):
            status = VerificationStatus.PENDING
        elif row["verified_at"] is not None:
            status = VerificationStatus.VERIFIED
        elif row["verification_error"] is not None:
            status = VerificationStatus.FAILED
        else:
            status = VerificationStatus.UNVERIFIED
        method = row["verification_method"]
        return SiteVerification(
            status=status, method=VerificationMethod(method) if method else None, token=row["verification_token"],
            meta_tag=p.meta_tag, link_tag=p.link_tag, well_known_url=p.well_known_url,
            well_known_content=p.well_known_content, error=row["verification_error"], requested_at=requested,
            checked_at=checked,
        )


@strawberry.federation.type(keys=["id"], name="Creator", description="A creator's public profile.")
class DirectoryCreator(Node):
    id: strawberry.ID
    pk: strawberry.Private[int]
    # Not fields of this subgraph, but read by the api subgraph's fields when one
    # process serves both merged (its Creator type resolves these by attribute).
    handle: strawberry.Private[str]
    display_name: strawberry.Private[str]

    @staticmethod
    def from_row(row: dict[str, Any]) -> DirectoryCreator:
        return DirectoryCreator(id=strawberry.ID(to_global("Creator", row["id"])), pk=row["id"],
                                handle=row["handle"], display_name=row["display_name"])

    @classmethod
    async def resolve_reference(cls, info: Info, id: strawberry.ID) -> DirectoryCreator | None:
        _, pk = from_global(id, expect="Creator")
        row = await info.context.loader("directory:creator", creator_by_id).load(pk)
        return DirectoryCreator.from_row(row) if row else None

    @strawberry.field(description="The creator's sites: listed ones, and all of them for the creator.")
    async def sites(self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
                    before: str | None = None) -> Connection[Site]:
        p = info.context.principal
        listing = sites.of_owner(owner_id=self.pk, everything=p.account_id == self.pk or p.tenant_wide)
        return await paginate_each(info.context, listing, window(first, after, last, before),
                                   lambda r: Site.from_row(dict(r)), cursor_of=lambda s: s.pk)


@strawberry.federation.type(keys=["id"], description="A creator's website, listed in the directory once verified.")
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
    listed_at: datetime | None
    pk: strawberry.Private[int]
    owner_pk: strawberry.Private[int]
    row: strawberry.Private[dict[str, Any]]

    @staticmethod
    def from_row(r: dict[str, Any]) -> Site:
        return Site(
            id=strawberry.ID(to_global("Site", r["id"])), pk=r["id"], owner_pk=r["owner_id"], row=r, url=r["url"],
            host=r["host"], verified=r["verified_at"] is not None, listed=r["listed"], title=r["title"],
            description=r["description"], language=r["language"], category=r["category"], tags=list(r["tags"]),
            feed_url=r["feed_url"], created_at=r["created_at"], listed_at=r["listed_at"],
        )

    @staticmethod
    async def load(info: Info, pk: int) -> Site | None:
        row = await info.context.loader("directory:site", site_by_id).load(pk)
        return Site.from_row(row) if row else None

    @classmethod
    async def resolve_reference(cls, info: Info, id: strawberry.ID) -> Site | None:
        _, pk = from_global(id, expect="Site")
        return await Site.load(info, pk)

    @strawberry.field(description="Who owns the site.")
    async def owner(self, info: Info) -> DirectoryCreator:
        row = await info.context.loader("directory:creator", creator_by_id).load(self.owner_pk)
        assert row is not None  # a site's owner exists (foreign key) and profiles are public
        return DirectoryCreator.from_row(row)

    @strawberry.field(description="The URL a Merci button on this site sends supporters to.")
    def button_url(self, info: Info) -> str:
        return sites.button_href(info.context.settings.public_url, self.url)

    @strawberry.field(description="Proof of ownership; null unless you own the site or administer its tenant.")
    async def verification(self, info: Info) -> SiteVerification | None:
        if not can_see_private(info.context, self.row):
            return None
        owner = await info.context.loader("directory:creator", creator_by_id).load(self.owner_pk)
        return SiteVerification.of(self.row, owner["handle"] if owner else "", info.context.settings.public_url)


@strawberry.type(description="How many listed sites match, for one value of a facet.")
class FacetCount:
    value: str
    count: int


@strawberry.type(description="Counts of the matching sites per category and per language. Each facet "
                             "ignores its own filter, so it tells what choosing another value would give.")
class SearchFacets:
    categories: list[FacetCount]
    languages: list[FacetCount]


@strawberry.enum(description="How search results are ordered.")
class SiteSort(Enum):
    RELEVANCE = strawberry.enum_value("RELEVANCE", description=(
        "Best match first (titles above tags above descriptions). Words that match very many sites are "
        "ranked among the most popular sites, which come first; their other matches follow, most popular first."))
    POPULAR = "POPULAR"
    NEWEST = "NEWEST"
    TRENDING = "TRENDING"


@strawberry.type(description="A range of characters in a text: `length` Unicode code points from `start` "
                             "(code points too, counted from 0).")
class TextRange:
    start: int
    length: int


@strawberry.type(description="Where a result's title and description hold the words the search matched "
                             "(as typed, by their stem, a typo or two away, or completed): ranges to mark.")
class SearchHighlight:
    site: strawberry.ID = strawberry.field(description="The result's Site id.")
    title: list[TextRange]
    description: list[TextRange]

    @staticmethod
    def of(h: highlights.Highlight) -> SearchHighlight:
        return SearchHighlight(site=strawberry.ID(to_global("Site", h.site_id)),
                               title=[TextRange(start=a, length=n) for a, n in h.title],
                               description=[TextRange(start=a, length=n) for a, n in h.description])


@strawberry.type(description="A page of search results.")
class SiteSearchConnection:
    edges: list[Edge[Site]]
    page_info: PageInfo
    corrected_query: str | None = strawberry.field(
        description="Set when a word typed is in no listing and the nearest words that are were searched instead "
                    "(as listings write them, e.g. \"writing\" for \"wrting\"); `exact: true` searches the words "
                    "as typed.")
    query: strawberry.Private[search.SearchQuery]
    match: strawberry.Private[str | None]
    counting: strawberry.Private[list[asyncio.Task[search.Facets]]]

    @strawberry.field(description="The matched words in each result's title and description, in the order of "
                                  "edges.")
    async def highlights(self, info: Info) -> list[SearchHighlight]:
        rows = [e.node.row for e in self.edges]
        async with info.context.tx() as conn:
            found = await highlights.of_rows(conn, rows, self.match)
        return [SearchHighlight.of(h) for h in found]

    @strawberry.field
    def nodes(self) -> list[Site]:
        return [e.node for e in self.edges]

    async def _facets(self, info: Info) -> search.Facets:
        # totalCount, facets and countsAreEstimates come from one count, made only if one
        # of them is asked for (they resolve concurrently: the first starts it).
        if not self.counting:
            async def count() -> search.Facets:
                async with info.context.tx() as conn:
                    return await search.facets(conn, self.query, self.match)

            self.counting.append(asyncio.ensure_future(count()))
        return await self.counting[0]

    @strawberry.field(description="How many listed sites match (all pages).")
    async def total_count(self, info: Info) -> int:
        return (await self._facets(info)).total

    @strawberry.field
    async def facets(self, info: Info) -> SearchFacets:
        f = await self._facets(info)
        return SearchFacets(categories=[FacetCount(value=v, count=c) for v, c in f.categories],
                            languages=[FacetCount(value=v, count=c) for v, c in f.languages])

    @strawberry.field(description="True when the words match so many sites that totalCount and facets are "
                                  "estimated (from the most popular sites that match) rather than counted.")
    async def counts_are_estimates(self, info: Info) -> bool:
        return (await self._facets(info)).estimated

    @strawberry.field(description="EXACT, or ESTIMATE as countsAreEstimates says (as on every connection).")
    async def total_count_precision(self, info: Info) -> CountPrecision:
        return precision(await self._facets(info))


def precision(facets: search.Facets) -> CountPrecision:
    return CountPrecision.ESTIMATE if facets.estimated else CountPrecision.EXACT


@strawberry.type(description="One of Flattr's categories.")
class Category:
    id: str
    name: str
    site_count: int = strawberry.field(description="Listed sites in this category.")


CATEGORY_NAMES = {"text": N_("Text"), "images": N_("Images"), "video": N_("Video"), "audio": N_("Audio"),
                  "software": N_("Software"), "people": N_("People"), "rest": N_("Everything else")}


def category_names(lang: str) -> dict[str, str]:
    """Each category's name in a supported language (merci.i18n.negotiate gives one)."""
    t = i18n.translations(lang)
    return {slug: t.gettext(name) for slug, name in CATEGORY_NAMES.items()}
