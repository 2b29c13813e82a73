from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import strawberry

from api.partners.types import (
    LinkedAccount,
    OAuthClient,
    PartnerAnalytics,
    WebhookEndpoint,
    require_partner,
)
from graph.context import Info
from graph.errors import ClientError
from graph.money import Money
from graph.relay import Connection, empty, paginate, window
from merci import oauth, partners, webhooks
from merci.errors import UserError
from merci.periods import PeriodError, parse_period, period_of


def _authorized(info: Info, scope: str) -> bool:
    """Like the other tenant-private fields, nothing (not an error) for anyone else."""
    try:
        require_partner(info.context, scope)
    except UserError:
        return False
    return True


# Relay pages a connection by the arguments of its own field.
_PAGE_ON_THINGS = "page with `things(first:, after:)` instead"


@strawberry.type
class PartnerQueries:
    @strawberry.field(description="Partners (`analytics:read`): the month's clicks and earnings of the tenant's "
                      "own things, in total and per thing (those clicked that month). Null without that scope.")
    async def partner_analytics(
        self, info: Info, period: str | None = None,
        first: Annotated[int | None, strawberry.argument(deprecation_reason=_PAGE_ON_THINGS)] = None,
        after: Annotated[str | None, strawberry.argument(deprecation_reason=_PAGE_ON_THINGS)] = None,
    ) -> PartnerAnalytics | None:
        if not _authorized(info, "analytics:read"):
            return None
        w = window(first, after)
        try:
            p = period_of(datetime.now(UTC)) if period is None else parse_period(period)
        except PeriodError as err:
            raise ClientError(str(err), "INVALID_PERIOD") from None
        cur = info.context.settings.currency
        async with info.context.tx() as conn:
            things, clicks, earnings = await partners.analytics_totals(conn, period=p)
        return PartnerAnalytics(
            period=f"{p:%Y-%m}", closed=earnings is not None, things_clicked=things, clicks=clicks,
            earnings=None if earnings is None else Money.make(earnings, cur), month=p, paging=w)

    @strawberry.field(description="Partners (`webhooks:write`): the tenant's webhook endpoints.")
    async def webhook_endpoints(self, info: Info, first: int | None = None, after: str | None = None,
                                last: int | None = None, before: str | None = None) -> Connection[WebhookEndpoint]:
        w = window(first, after, last, before)
        if not _authorized(info, "webhooks:write"):
            return empty()
        return await paginate(info.context.tx, webhooks.endpoints(), w, lambda r: WebhookEndpoint.from_row(dict(r)),
                              cursor_of=lambda e: e.pk)

    @strawberry.field(name="oauthClients", description="Tenant admins: the tenant's OAuth clients.")
    async def oauth_clients(self, info: Info, first: int | None = None, after: str | None = None,
                            last: int | None = None, before: str | None = None) -> Connection[OAuthClient]:
        ctx = info.context
        w = window(first, after, last, before)
        if not (ctx.principal.tenant_admin or ctx.principal.platform_admin):
            return empty()
        return await paginate(ctx.tx, oauth.clients(tenant_id=ctx.principal.tenant_id), w,
                              lambda r: OAuthClient.from_row(dict(r)), cursor_of=lambda c: c.pk)

    @strawberry.field(description="For a partner (an API key or a tenant admin): the supporters who linked their "
                      "account. For a supporter: the partners they linked theirs to.")
    async def linked_accounts(self, info: Info, first: int | None = None, after: str | None = None,
                              active: bool | None = None, last: int | None = None,
                              before: str | None = None) -> Connection[LinkedAccount]:
        ctx = info.context
        p = ctx.principal
        w = window(first, after, last, before)
        partner = p.api_key_id is not None or p.tenant_admin
        if not partner and p.account_id is None:
            return empty()
        listing = oauth.links(partner=partner, tenant_id=p.tenant_id, account_id=p.account_id, active=active)
        return await paginate(ctx.tx, listing, w, lambda r: LinkedAccount.from_row(dict(r)),
                              cursor_of=lambda link: link.pk)
