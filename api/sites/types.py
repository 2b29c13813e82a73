from __future__ import annotations

from datetime import UTC, datetime

import strawberry

from api.sites.loaders import site_clicks_in_period, visible_site_ids
from api.things.types import Thing
from graph.context import Info
from graph.relay import Connection, Node, paginate_each, window
from merci import things
from merci.ids import from_global, to_global
from merci.periods import period_of


@strawberry.federation.type(keys=["id"], name="Site", description="A creator's website.")
class ApiSite(Node):
    """The directory owns sites; the api subgraph adds what it knows: clicks and things."""

    id: strawberry.ID
    pk: strawberry.Private[int]

    @classmethod
    async def resolve_reference(cls, info: Info, id: strawberry.ID) -> ApiSite | None:
        _, pk = from_global(id, expect="Site")
        if not await info.context.loader("api:site-visible", visible_site_ids).load(pk):
            return None
        return ApiSite(id=strawberry.ID(to_global("Site", pk)), pk=pk)

    @strawberry.field(description="Clicks this month on the site's things (all supporters).")
    async def clicks_this_month(self, info: Info) -> int:
        period = period_of(datetime.now(UTC))
        return await info.context.loader(f"api:site-clicks:{period}",
                                         lambda c: site_clicks_in_period(c, period)).load(self.pk)

    @strawberry.field(description="The site's things, newest first.")
    async def things(self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
                     before: str | None = None) -> Connection[Thing]:
        listing = things.on_site(site_id=self.pk, tenant_wide=info.context.principal.tenant_wide)
        return await paginate_each(info.context, listing, window(first, after, last, before),
                                   lambda r: Thing.from_row(dict(r)), cursor_of=lambda t: t.pk)
