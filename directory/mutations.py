"""The directory subgraph's mutations: add, verify, list and unlist sites."""

from __future__ import annotations

import asyncio

import strawberry

from directory.loaders import manages_sites
from directory.types import Site
from graph.context import Context, Info
from graph.errors import UserErrorType, attempt, user_errors_only
from merci import accounts, sites
from merci.errors import Checks, UserError
from merci.ids import from_global


@strawberry.input
class AddSiteInput:
    url: str
    owner_id: strawberry.ID | None = strawberry.field(
        default=None, description="API keys (sites:write) add a site for one of their tenant's creators.")


@strawberry.input
class VerifySiteInput:
    site_id: strawberry.ID


@strawberry.input
class ListSiteInput:
    site_id: strawberry.ID
    title: str
    description: str = strawberry.field(description="5 to 1000 characters.")
    language: str = strawberry.field(description="Two-letter ISO 639-1 code, e.g. en or fr.")
    category: str = strawberry.field(description="text, images, video, audio, software, people or rest.")
    tags: list[str] = strawberry.field(default_factory=list, description="At most 10.")
    feed_url: str | None = None


@strawberry.input
class UnlistSiteInput:
    site_id: strawberry.ID


@strawberry.input
class BulkListSitesInput:
    listings: list[ListSiteInput] = strawberry.field(description=f"At most {sites.MAX_BULK}; all or nothing.")


@strawberry.type
class SitePayload:
    site: Site | None
    user_errors: list[UserErrorType]


@strawberry.type
class BulkListSitesPayload:
    sites: list[Site] | None
    user_errors: list[UserErrorType]


def _may_manage(ctx: Context) -> tuple[int | None, bool]:
    """(account, tenant-wide?) of a caller allowed to change sites."""
    p = ctx.principal
    if p.api_key_id is not None:
        ctx.require_scope("sites:write")
        return None, True
    return ctx.require_account(), manages_sites(ctx)


def _site_pk(gid: strawberry.ID, field: str = "siteId") -> int:
    return from_global(gid, expect="Site", field=field)[1]


@strawberry.type
class DirectoryMutations:
    @strawberry.mutation(description="Add a site you own; prove it with one of the ways in `verification`.")
    async def add_site(self, info: Info, input: AddSiteInput) -> SitePayload:
        ctx = info.context

        async def work() -> SitePayload:
            me, tenant_wide = _may_manage(ctx)
            checks = Checks()  # the URL's refusal with the owner's
            checks(sites.site_url, input.url)
            owner = me
            if input.owner_id is not None:
                found = checks(from_global, input.owner_id, field="ownerId")
                owner = None if found is None else found[1]
                if found is not None and found[0] not in ("Creator", "Account"):
                    checks.refuse(UserError("INVALID_ID", "not a valid Creator id", "ownerId"))
                elif found is not None and owner != me and not tenant_wide:
                    checks.refuse(UserError("FORBIDDEN", "only your tenant's admins and keys add sites for others",
                                            "ownerId"))
            elif owner is None:
                checks.refuse(UserError("OWNER_REQUIRED", "an API key says whose site this is", "ownerId"))
            checks.done()
            assert owner is not None  # (else refused above)
            async with ctx.tx() as conn:
                if not await accounts.in_current_tenant(conn, account_id=owner):
                    raise UserError("NOT_FOUND", "no such creator in your tenant", "ownerId")
                pk = await sites.add_site(conn, tenant_id=ctx.principal.tenant_id, owner_id=owner, url=input.url)
            return SitePayload(site=await Site.load(info, pk), user_errors=[])

        return await attempt(work, user_errors_only(SitePayload))

    @strawberry.mutation(description="Check the site for its proof of ownership, in the background; "
                                     "`site.verification` tells the outcome.")
    async def verify_site(self, info: Info, input: VerifySiteInput) -> SitePayload:
        ctx = info.context

        async def work() -> SitePayload:
            me, tenant_wide = _may_manage(ctx)
            pk = _site_pk(input.site_id)
            if ctx.queue is None:
                raise UserError("UNAVAILABLE", "verification is not available on this server", None)
            async with ctx.tx() as conn:
                await sites.editable_site(conn, site_id=pk, account_id=me, tenant_admin=tenant_wide)
                await sites.request_verification(conn, site_id=pk)
            # After commit: the worker must see the request it answers.
            await ctx.queue.asend(sites.VERIFY_ACTOR, pk, queue_name=sites.DIRECTORY_QUEUE)
            return SitePayload(site=await Site.load(info, pk), user_errors=[])

        return await attempt(work, user_errors_only(SitePayload))

    @strawberry.mutation(description="List a verified site in the directory, or edit its listing.")
    async def list_site(self, info: Info, input: ListSiteInput) -> SitePayload:
        ctx = info.context

        async def work() -> SitePayload:
            me, tenant_wide = _may_manage(ctx)
            checks = Checks()
            pk = checks(_site_pk, input.site_id)
            listing = checks(_listing, input)
            checks.done()
            async with ctx.tx() as conn:
                site = await sites.editable_site(conn, site_id=pk, account_id=me, tenant_admin=tenant_wide)
                await sites.save_listing(conn, site=site, listing=listing)
            return SitePayload(site=await Site.load(info, pk), user_errors=[])

        return await attempt(work, user_errors_only(SitePayload))

    @strawberry.mutation(description="Take a site out of the directory (it stays verified).")
    async def unlist_site(self, info: Info, input: UnlistSiteInput) -> SitePayload:
        ctx = info.context

        async def work() -> SitePayload:
            me, tenant_wide = _may_manage(ctx)
            pk = _site_pk(input.site_id)
            async with ctx.tx() as conn:
                await sites.editable_site(conn, site_id=pk, account_id=me, tenant_admin=tenant_wide)
                await sites.unlist(conn, site_id=pk)
            return SitePayload(site=await Site.load(info, pk), user_errors=[])

        return await attempt(work, user_errors_only(SitePayload))

    @strawberry.mutation(description="Partners: list (or edit) many of your creators' verified sites at once "
                                     "with an API key (sites:write) or as a tenant admin. All or nothing.")
    async def bulk_list_sites(self, info: Info, input: BulkListSitesInput) -> BulkListSitesPayload:
        ctx = info.context

        async def work() -> BulkListSitesPayload:
            _, tenant_wide = _may_manage(ctx)
            if not tenant_wide:
                raise UserError("FORBIDDEN", "bulk listing is for tenant admins and API keys", None)
            if not 1 <= len(input.listings) <= sites.MAX_BULK:
                raise UserError("TOO_MANY_LISTINGS", f"send 1 to {sites.MAX_BULK} listings at a time", "listings")
            checks = Checks()  # every item's every refusal
            cleaned = [(checks(_site_pk, item.site_id, f"listings.{i}.siteId"),
                        checks(_listing, item, f"listings.{i}.")) for i, item in enumerate(input.listings)]
            checks.done()
            if len({pk for pk, _ in cleaned}) != len(cleaned):
                raise UserError("DUPLICATE_SITE", "a site appears twice", "listings")
            # One order for every writer: counters of the same category and language are
            # updated in the same sequence, so concurrent bulk listings cannot deadlock.
            order = sorted(range(len(cleaned)), key=lambda i: (cleaned[i][1].category, cleaned[i][1].language,
                                                               cleaned[i][0]))
            async with ctx.tx() as conn:
                for i in order:
                    pk, listing = cleaned[i]
                    site = await sites.editable_site(conn, site_id=pk, account_id=None, tenant_admin=True,
                                                     field=f"listings.{i}.siteId")
                    await sites.save_listing(conn, site=site, listing=listing, field=f"listings.{i}.siteId")
            found = await asyncio.gather(*(Site.load(info, pk) for pk, _ in cleaned))  # one statement
            return BulkListSitesPayload(sites=[s for s in found if s is not None], user_errors=[])

        async def run() -> BulkListSitesPayload:
            try:
                return await work()
            except UserError as err:
                # A bulk error points into the list: ["listings", "3", "description"].
                return BulkListSitesPayload(sites=None, user_errors=[
                    UserErrorType(field=e.field.split(".") if e.field else None, message=e.message, code=e.code)
                    for e in err.each()])

        return await run()


def _listing(item: ListSiteInput, prefix: str = "") -> sites.Listing:
    return sites.clean_listing(title=item.title, description=item.description, language=item.language,
                               category=item.category, tags=item.tags, feed_url=item.feed_url, prefix=prefix)
