from __future__ import annotations

from datetime import UTC, datetime

import strawberry

from api.partners.types import (
    ENDPOINT_COLUMNS,
    LINK_SELECT,
    LinkedAccount,
    OAuthClient,
    PartnerAnalytics,
    ThingMonthStats,
    WebhookEndpoint,
    require_partner,
)
from graph.context import Info
from graph.errors import ClientError
from graph.money import Money
from graph.relay import Connection, check_first, connection, decode_int_cursor
from merci import partners
from merci.clicks import period_of
from merci.close import CloseError, parse_period
from merci.errors import UserError


def _authorized(info: Info, scope: str) -> bool:
    """Like the other tenant-private fields, nothing (not an error) for anyone else."""
    try:
        require_partner(info.context, scope)
    except UserError:
        return False
    return True


@strawberry.type
class PartnerQueries:
    @strawberry.field(description="Partners (`analytics:read`): the month's clicks and earnings of the tenant's "
                      "own things, in total and per thing (those clicked that month). Null without that scope.")
    async def partner_analytics(self, info: Info, period: str | None = None, first: int | None = None,
                                after: str | None = None) -> PartnerAnalytics | None:
        if not _authorized(info, "analytics:read"):
            return None
        n = check_first(first)
        cursor = decode_int_cursor(after)
        try:
            p = period_of(datetime.now(UTC)) if period is None else parse_period(period)
        except CloseError as err:
            raise ClientError(str(err), "INVALID_PERIOD") from None
        cur = info.context.settings.currency
        async with info.context.tx() as conn:
            rows, closed = await partners.analytics(conn, period=p, first=n, after=cursor)
            things, clicks, earnings = await partners.analytics_totals(conn, period=p)
        stats = [ThingMonthStats(period=f"{p:%Y-%m}", clicks=r.clicks, thing_row=r.thing,
                                 earnings=None if r.earnings is None else Money.make(r.earnings, cur)) for r in rows]
        return PartnerAnalytics(
            period=f"{p:%Y-%m}", closed=closed, things_clicked=things, clicks=clicks,
            earnings=None if earnings is None else Money.make(earnings, cur),
            things=connection(stats, first=n, cursor_of=lambda s: s.thing_row["id"]))

    @strawberry.field(description="Partners (`webhooks:write`): the tenant's webhook endpoints.")
    async def webhook_endpoints(self, info: Info, first: int | None = None,
                                after: str | None = None) -> Connection[WebhookEndpoint]:
        n = check_first(first)
        cursor = decode_int_cursor(after) or 0
        if not _authorized(info, "webhooks:write"):
            return connection([], first=n, cursor_of=lambda e: e.pk)
        async with info.context.tx() as conn:
            rows = await conn.fetch(f"select {ENDPOINT_COLUMNS} from webhook_endpoints where id > $1"
                                    " order by id limit $2", cursor, n + 1)
        return connection([WebhookEndpoint.from_row(dict(r)) for r in rows], first=n, cursor_of=lambda e: e.pk)

    @strawberry.field(name="oauthClients", description="Tenant admins: the tenant's OAuth clients.")
    async def oauth_clients(self, info: Info, first: int | None = None,
                            after: str | None = None) -> Connection[OAuthClient]:
        ctx = info.context
        n = check_first(first)
        cursor = decode_int_cursor(after) or 0
        if not (ctx.principal.tenant_admin or ctx.principal.platform_admin):
            return connection([], first=n, cursor_of=lambda c: c.pk)
        async with ctx.tx() as conn:
            rows = await conn.fetch(
                "select id, client_id, name, redirect_uris, created_at, revoked_at from oauth_clients"
                " where tenant_id = $1 and id > $2 order by id limit $3", ctx.principal.tenant_id, cursor, n + 1)
        return connection([OAuthClient.from_row(dict(r)) for r in rows], first=n, cursor_of=lambda c: c.pk)

    @strawberry.field(description="For a partner (an API key or a tenant admin): the supporters who linked their "
                      "account. For a supporter: the partners they linked theirs to.")
    async def linked_accounts(self, info: Info, first: int | None = None, after: str | None = None,
                              active: bool | None = None) -> Connection[LinkedAccount]:
        ctx = info.context
        p = ctx.principal
        n = check_first(first)
        cursor = decode_int_cursor(after) or 0
        partner = p.api_key_id is not None or p.tenant_admin
        if not partner and p.account_id is None:
            return connection([], first=n, cursor_of=lambda link: link.pk)
        async with ctx.tx() as conn:
            rows = await conn.fetch(
                LINK_SELECT + " where (case when $1 then l.tenant_id = $2 else l.account_id = $3 end)"
                " and ($4::boolean is null or (l.revoked_at is null) = $4) and l.id > $5 order by l.id limit $6",
                partner, p.tenant_id, p.account_id, active, cursor, n + 1)
        return connection([LinkedAccount.from_row(dict(r)) for r in rows], first=n, cursor_of=lambda link: link.pk)
