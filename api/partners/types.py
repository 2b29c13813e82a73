from __future__ import annotations

from datetime import date, datetime
from enum import Enum
from typing import Any

import strawberry

from api.partners.loaders import attempts_by_delivery, endpoint_by_id
from api.things.types import Thing
from graph.context import Context, Info
from graph.money import Money
from graph.node import register
from graph.relay import Connection, Counter, Node, from_items, paginate_each, window
from merci import oauth, partners, webhooks
from merci.errors import UserError
from merci.ids import to_global
from merci.paging import Window


def require_partner(ctx: Context, scope: str) -> None:
    """A tenant's API key with `scope`, or a tenant admin's session."""
    p = ctx.principal
    if p.api_key_id is not None:
        ctx.require_scope(scope)
        return
    if p.account_id is None:
        raise ctx.unauthenticated("use a tenant API key, or log in as a tenant admin")
    ctx.require_tenant_admin()


def is_partner(ctx: Context, scope: str) -> bool:
    try:
        require_partner(ctx, scope)
    except UserError:
        return False
    return True


def may_see_link(ctx: Context, row: dict[str, Any]) -> bool:
    """The supporter, or the partner (any of its API keys, or its admins)."""
    p = ctx.principal
    if row["account_id"] == p.account_id:
        return True
    return row["tenant_id"] == p.tenant_id and (p.api_key_id is not None or p.tenant_admin)


@strawberry.enum
class WebhookEvent(Enum):
    CLICK_ACCEPTED = "click.accepted"
    MONTH_CLOSED = "month.closed"
    PAYOUT_SENT = "payout.sent"


@strawberry.enum
class WebhookDeliveryStatus(Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@strawberry.type(description="One try at delivering a webhook: what the endpoint answered, or why it could not.")
class WebhookAttempt:
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


@strawberry.type(description="An event sent (or to be sent) to one endpoint, with every attempt.")
class WebhookDelivery(Node):
    id: strawberry.ID
    event_id: strawberry.ID = strawberry.field(description="Sent as the Merci-Event-Id header: dedupe on it.")
    event: WebhookEvent
    status: WebhookDeliveryStatus
    attempts: int
    created_at: datetime
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    last_error: str | None
    replay_of: strawberry.ID | None
    body: str = strawberry.field(description="The JSON body, as signed and sent.")
    pk: strawberry.Private[int]
    endpoint_pk: strawberry.Private[int]

    @staticmethod
    def from_row(r: dict[str, Any]) -> WebhookDelivery:
        return WebhookDelivery(
            id=strawberry.ID(to_global("WebhookDelivery", r["id"])), pk=r["id"], endpoint_pk=r["endpoint_id"],
            event_id=strawberry.ID(to_global("WebhookEvent", r["event_id"])), event=WebhookEvent(r["type"]),
            status=WebhookDeliveryStatus(r["status"]), attempts=r["attempts"], created_at=r["created_at"],
            last_attempt_at=r["last_attempt_at"], delivered_at=r["delivered_at"], last_error=r["last_error"],
            replay_of=None if r["replay_of"] is None else strawberry.ID(to_global("WebhookDelivery", r["replay_of"])),
            body=webhooks.render({"id": r["event_id"], "type": r["type"], "payload": r["payload"],
                                  "created_at": r["event_at"]}).decode(),
        )

    @staticmethod
    async def load(info: Info, pk: int) -> WebhookDelivery | None:
        if not is_partner(info.context, "webhooks:write"):
            return None
        async with info.context.tx() as conn:  # RLS: the caller's tenant's deliveries only
            row = await webhooks.delivery(conn, delivery_id=pk)
        return WebhookDelivery.from_row(row) if row else None

    @strawberry.field
    async def endpoint(self, info: Info) -> WebhookEndpoint | None:
        row = await info.context.loader("webhook_endpoint", endpoint_by_id).load(self.endpoint_pk)
        return WebhookEndpoint.from_row(row) if row else None

    @strawberry.field(description="Every attempt, oldest first.")
    async def attempt_log(self, info: Info) -> list[WebhookAttempt]:
        rows = await info.context.loader("webhook_attempts", attempts_by_delivery).load(self.pk)
        return [WebhookAttempt(**r) for r in rows]


@strawberry.type(description="Where a partner receives webhooks, and for which events.")
class WebhookEndpoint(Node):
    id: strawberry.ID
    url: str
    events: list[WebhookEvent]
    description: str
    active: bool
    created_at: datetime
    disabled_at: datetime | None
    pk: strawberry.Private[int]

    @staticmethod
    def from_row(r: dict[str, Any]) -> WebhookEndpoint:
        return WebhookEndpoint(
            id=strawberry.ID(to_global("WebhookEndpoint", r["id"])), pk=r["id"], url=r["url"],
            events=[WebhookEvent(e) for e in r["events"]], description=r["description"], active=r["active"],
            created_at=r["created_at"], disabled_at=r["disabled_at"])

    @staticmethod
    async def load(info: Info, pk: int) -> WebhookEndpoint | None:
        if not is_partner(info.context, "webhooks:write"):
            return None
        row = await info.context.loader("webhook_endpoint", endpoint_by_id).load(pk)
        return WebhookEndpoint.from_row(row) if row else None

    @strawberry.field(description="Deliveries to this endpoint, newest first.")
    async def deliveries(self, info: Info, first: int | None = None, after: str | None = None,
                         status: WebhookDeliveryStatus | None = None, last: int | None = None,
                         before: str | None = None) -> Connection[WebhookDelivery]:
        listing = webhooks.deliveries(endpoint_id=self.pk, status=None if status is None else status.value)
        return await paginate_each(info.context, listing, window(first, after, last, before),
                                   lambda r: WebhookDelivery.from_row(dict(r)), cursor_of=lambda d: d.pk)


@strawberry.type(name="OAuthClient", description="A partner's OAuth 2 client, for linking supporters' accounts.")
class OAuthClient(Node):
    id: strawberry.ID
    client_id: str
    name: str
    redirect_uris: list[str]
    created_at: datetime
    revoked_at: datetime | None
    pk: strawberry.Private[int]

    @staticmethod
    def from_row(r: dict[str, Any]) -> OAuthClient:
        return OAuthClient(id=strawberry.ID(to_global("OAuthClient", r["id"])), pk=r["id"], client_id=r["client_id"],
                           name=r["name"], redirect_uris=list(r["redirect_uris"]), created_at=r["created_at"],
                           revoked_at=r["revoked_at"])

    @staticmethod
    async def load(info: Info, pk: int) -> OAuthClient | None:
        ctx = info.context
        if not (ctx.principal.tenant_admin or ctx.principal.platform_admin):
            return None
        async with ctx.tx() as conn:
            row = await oauth.client(conn, client_pk=pk, tenant_id=ctx.principal.tenant_id)
        return OAuthClient.from_row(row) if row else None


@strawberry.type(description="A supporter's Merci account linked to a partner, which may then send clicks for them.")
class LinkedAccount(Node):
    id: strawberry.ID
    supporter_id: strawberry.ID = strawberry.field(description="The supporter's Account id (for submitClicks).")
    supporter_handle: str
    partner_slug: str
    partner_name: str
    client_name: str
    scopes: list[str]
    created_at: datetime
    updated_at: datetime
    revoked_at: datetime | None
    active: bool
    pk: strawberry.Private[int]

    @staticmethod
    def from_row(r: dict[str, Any]) -> LinkedAccount:
        return LinkedAccount(
            id=strawberry.ID(to_global("LinkedAccount", r["id"])), pk=r["id"],
            supporter_id=strawberry.ID(to_global("Account", r["account_id"])), supporter_handle=r["handle"],
            partner_slug=r["partner_slug"], partner_name=r["partner_name"], client_name=r["client_name"],
            scopes=list(r["scopes"]), created_at=r["created_at"], updated_at=r["updated_at"],
            revoked_at=r["revoked_at"], active=r["revoked_at"] is None)

    @staticmethod
    async def load(info: Info, pk: int) -> LinkedAccount | None:
        ctx = info.context
        if ctx.principal.api_key_id is None and ctx.principal.account_id is None:
            return None
        async with ctx.tx() as conn:  # RLS: the partner's links, or the supporter's own
            row = await oauth.link(conn, link_id=pk)
        if row is None:
            return None
        return LinkedAccount.from_row(row) if may_see_link(ctx, row) else None


@strawberry.type(description="A thing's clicks and earnings in one month.")
class ThingMonthStats:
    period: str
    clicks: int
    earnings: Money | None = strawberry.field(description="What the month's close credited it; null while open.")
    thing_row: strawberry.Private[dict[str, Any]]

    @strawberry.field
    def thing(self) -> Thing:
        return Thing.from_row(self.thing_row)


@strawberry.type(description="A month of the tenant's own things: totals, and per thing.")
class PartnerAnalytics:
    period: str
    closed: bool
    things_clicked: int
    clicks: int
    earnings: Money | None = strawberry.field(description="Credited at the month's close; null while open.")
    month: strawberry.Private[date]
    paging: strawberry.Private[Window]  # partnerAnalytics' own (deprecated) first/after

    @strawberry.field(description="The things clicked that month, by id (as many in all as thingsClicked).")
    async def things(self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
                     before: str | None = None) -> Connection[ThingMonthStats]:
        given = (first, after, last, before) != (None, None, None, None)
        w = window(first, after, last, before) if given else self.paging
        cur = info.context.settings.currency
        async with info.context.tx() as conn:
            page, rows, _ = await partners.analytics(conn, period=self.month, window=w)
        stats = [ThingMonthStats(period=self.period, clicks=r.clicks, thing_row=r.thing,
                                 earnings=None if r.earnings is None else Money.make(r.earnings, cur)) for r in rows]
        return from_items(stats, cursor_of=lambda s: s.thing_row["id"], has_next=page.has_next,
                          has_previous=page.has_previous, counter=Counter.known(self.things_clicked))


register("WebhookEndpoint", WebhookEndpoint.load)
register("WebhookDelivery", WebhookDelivery.load)
register("OAuthClient", OAuthClient.load)
register("LinkedAccount", LinkedAccount.load)
