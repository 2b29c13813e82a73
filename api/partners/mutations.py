from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import strawberry

from api.clicks.types import ClickReceipt, ClickStatus
from api.partners.types import (
    LinkedAccount,
    OAuthClient,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    may_see_link,
    require_partner,
)
from api.things.mutations import SubmitThingInput
from api.things.types import Thing
from graph.context import Info
from graph.errors import UserErrorType, attempt, user_errors_only
from merci import oauth, partners, webhooks
from merci.clicks import Accepted
from merci.errors import Checks, UserError
from merci.ids import from_global
from merci.partners import BatchRefused, ItemError
from merci.periods import period_of

P = TypeVar("P")


def _errors(errors: list[ItemError]) -> list[UserErrorType]:
    return [UserErrorType(field=e.path, message=e.message, code=e.code) for e in errors]


async def _bulk(work: Callable[[], Awaitable[P]], payload: type[P]) -> P:
    """Like `attempt`, and a refused batch lists every malformed item (nothing changed)."""
    async def guarded() -> P:
        try:
            return await work()
        except BatchRefused as refused:
            return user_errors_only(payload)(_errors(refused.errors))

    return await attempt(guarded, user_errors_only(payload))


def _id(raw: strawberry.ID, types: tuple[str, ...], path: list[str], errors: list[ItemError]) -> int | None:
    try:
        type_name, pk = from_global(raw)
    except UserError:
        type_name, pk = "", 0
    if type_name not in types:
        errors.append(ItemError(path, "INVALID_ID", f"not a valid {' or '.join(types)} id"))
        return None
    return pk


# ---------------------------------------------------------------- things and clicks


@strawberry.input
class RegisterThingInput(SubmitThingInput):
    owner_id: strawberry.ID | None = strawberry.field(
        default=None, description="A creator of your tenant (Creator or Account id); none: unclaimed.")


@strawberry.input
class RegisterThingsInput:
    things: list[RegisterThingInput] = strawberry.field(description="1 to 1000 things.")


@strawberry.type
class RegisterThingsPayload:
    things: list[Thing | None] | None = strawberry.field(
        description="One per input item, in order; null where refused (see userErrors).")
    user_errors: list[UserErrorType]


@strawberry.input
class PartnerClickInput:
    supporter_id: strawberry.ID = strawberry.field(description="A supporter who linked their account to you.")
    thing_id: strawberry.ID | None = None
    url: str | None = None
    idempotency_key: str = strawberry.field(description="Yours, unique per click (1 to 180 characters).")


@strawberry.input
class SubmitClicksInput:
    clicks: list[PartnerClickInput] = strawberry.field(description="1 to 1000 clicks.")


@strawberry.type
class SubmitClicksPayload:
    clicks: list[ClickReceipt | None] | None = strawberry.field(
        description="One per input item, in order: PENDING when accepted; null where refused (see userErrors).")
    user_errors: list[UserErrorType]


# ---------------------------------------------------------------- webhooks


@strawberry.input
class CreateWebhookEndpointInput:
    url: str
    events: list[WebhookEvent]
    description: str = ""


@strawberry.type
class WebhookEndpointPayload:
    webhook_endpoint: WebhookEndpoint | None
    secret: str | None = strawberry.field(default=None, description="The signing secret: shown once, store it.")
    user_errors: list[UserErrorType]


@strawberry.input
class UpdateWebhookEndpointInput:
    id: strawberry.ID
    url: str | None = None
    events: list[WebhookEvent] | None = None
    active: bool | None = None


@strawberry.input
class WebhookEndpointIdInput:
    id: strawberry.ID


@strawberry.input
class ReplayWebhookDeliveryInput:
    id: strawberry.ID


@strawberry.type
class WebhookDeliveryPayload:
    webhook_delivery: WebhookDelivery | None
    user_errors: list[UserErrorType]


# ---------------------------------------------------------------- OAuth and links


@strawberry.input
class CreateOAuthClientInput:
    name: str
    redirect_uris: list[str]


@strawberry.type
class CreateOAuthClientPayload:
    oauth_client: OAuthClient | None
    client_secret: str | None = strawberry.field(default=None, description="Shown once; store it now.")
    user_errors: list[UserErrorType]


@strawberry.input
class RevokeLinkedAccountInput:
    id: strawberry.ID


@strawberry.type
class LinkedAccountPayload:
    linked_account: LinkedAccount | None
    user_errors: list[UserErrorType]


@strawberry.type
class PartnerMutations:
    @strawberry.mutation(description="Partners (`things:write`): register up to 1000 things for your creators. "
                         "Registering a URL again for the same creator returns the same thing.")
    async def register_things(self, info: Info, input: RegisterThingsInput) -> RegisterThingsPayload:
        ctx = info.context

        async def work() -> RegisterThingsPayload:
            require_partner(ctx, "things:write")
            partners.check_batch(input.things, "things")
            errors: list[ItemError] = []
            items = [partners.ThingItem(
                url=t.url, title=t.title, description=t.description, category=t.category, language=t.language,
                tags=t.tags, hidden=t.hidden,
                owner_id=None if t.owner_id is None else _id(t.owner_id, ("Creator", "Account"),
                                                             ["things", str(i), "ownerId"], errors))
                for i, t in enumerate(input.things)]
            if errors:
                raise BatchRefused(errors)
            async with ctx.tx() as conn:
                ids, refused = await partners.register_things(conn, tenant_id=ctx.principal.tenant_id, items=items)
            loaded = await asyncio.gather(*(Thing.load(info, pk) for pk in ids if pk is not None))
            found = iter(loaded)
            things = [None if pk is None else next(found) for pk in ids]
            return RegisterThingsPayload(things=things, user_errors=_errors(refused))

        return await _bulk(work, RegisterThingsPayload)

    @strawberry.mutation(description="Partners (`clicks:write`): send up to 1000 clicks for supporters who linked "
                         "their Merci account to you. Accepted clicks are answered PENDING and counted by the "
                         "workers (the click.accepted webhook tells when).")
    async def submit_clicks(self, info: Info, input: SubmitClicksInput) -> SubmitClicksPayload:
        ctx = info.context

        async def work() -> SubmitClicksPayload:
            require_partner(ctx, "clicks:write")
            partners.check_batch(input.clicks, "clicks")
            # Counted in clicks, per API key (a tenant admin's session: per account).
            await ctx.limit("partner_clicks.key", ctx.principal.api_key_id or f"account:{ctx.principal.account_id}",
                            cost=max(1, len(input.clicks)), what="clicks")
            errors: list[ItemError] = []
            items = []
            for i, c in enumerate(input.clicks):
                supporter = _id(c.supporter_id, ("Account", "Creator"), ["clicks", str(i), "supporterId"], errors)
                thing = None if c.thing_id is None else _id(c.thing_id, ("Thing",), ["clicks", str(i), "thingId"],
                                                            errors)
                items.append(partners.ClickItem(supporter or 0, thing, c.url, c.idempotency_key))
            if errors:
                raise BatchRefused(errors)
            now = datetime.now(UTC)
            async with ctx.tx() as conn:
                results = await partners.precheck_clicks(conn, tenant_id=ctx.principal.tenant_id, items=items,
                                                         currency=ctx.settings.currency, now=now)
            batch: dict[tuple[int, str], Accepted] = {}
            for r in results:
                if isinstance(r, Accepted):
                    batch.setdefault((r.supporter_id, r.idempotency_key), r)
            if batch:
                if ctx.clicks is None:
                    raise UserError("UNAVAILABLE", "clicks cannot be accepted right now; try again", None)
                try:  # one batch for the whole call, durable before it is answered (merci.clicks.Handoff)
                    await ctx.clicks.handoff.hand(lambda _tenant: ctx.tx(), ctx.principal.tenant_id,
                                                  list(batch.values()))
                except UserError:  # MONTH_CLOSED: the month's close began since the checks (merci.clicks)
                    raise
                except Exception as exc:  # broker or database down: nothing accepted; the call may be retried
                    raise UserError("UNAVAILABLE", "clicks cannot be accepted right now; try again", None) from exc
            period = f"{period_of(now):%Y-%m}"
            receipts: list[ClickReceipt | None] = [
                ClickReceipt(idempotency_key=item.idempotency_key, status=ClickStatus.PENDING, reason=None,
                             period=period, thing_pk=r.thing_id) if isinstance(r, Accepted) else None
                for item, r in zip(items, results, strict=True)]
            refused = [r for r in results if isinstance(r, ItemError)]
            return SubmitClicksPayload(clicks=receipts, user_errors=_errors(refused))

        return await _bulk(work, SubmitClicksPayload)

    @strawberry.mutation(description="Partners (`webhooks:write`): receive events at a URL, signed with a secret "
                         "shown once.")
    async def create_webhook_endpoint(self, info: Info, input: CreateWebhookEndpointInput) -> WebhookEndpointPayload:
        ctx = info.context

        async def work() -> WebhookEndpointPayload:
            require_partner(ctx, "webhooks:write")
            async with ctx.tx() as conn:
                pk, secret = await webhooks.create_endpoint(
                    conn, tenant_id=ctx.principal.tenant_id, url=input.url, events=[e.value for e in input.events],
                    description=input.description, allow_loopback=ctx.settings.fetch_allow_loopback)
            return WebhookEndpointPayload(webhook_endpoint=await WebhookEndpoint.load(info, pk), secret=secret,
                                          user_errors=[])

        return await attempt(work, user_errors_only(WebhookEndpointPayload))

    @strawberry.mutation(description="Partners (`webhooks:write`): change an endpoint's URL or events, or "
                         "disable (active: false) and re-enable it.")
    async def update_webhook_endpoint(self, info: Info, input: UpdateWebhookEndpointInput) -> WebhookEndpointPayload:
        ctx = info.context

        async def work() -> WebhookEndpointPayload:
            require_partner(ctx, "webhooks:write")
            checks = Checks()  # the id's refusal with the changes'
            found = checks(from_global, input.id, expect="WebhookEndpoint")
            checks(webhooks.check_changes, url=input.url, allow_loopback=ctx.settings.fetch_allow_loopback,
                   events=None if input.events is None else [e.value for e in input.events])
            checks.done()
            pk = found[1]
            async with ctx.tx() as conn:
                await webhooks.update_endpoint(
                    conn, endpoint_id=pk, url=input.url, active=input.active,
                    events=None if input.events is None else [e.value for e in input.events],
                    allow_loopback=ctx.settings.fetch_allow_loopback)
            return WebhookEndpointPayload(webhook_endpoint=await WebhookEndpoint.load(info, pk), user_errors=[])

        return await attempt(work, user_errors_only(WebhookEndpointPayload))

    @strawberry.mutation(description="Partners (`webhooks:write`): a new signing secret, shown once; the old one "
                         "stops signing at once.")
    async def rotate_webhook_secret(self, info: Info, input: WebhookEndpointIdInput) -> WebhookEndpointPayload:
        ctx = info.context

        async def work() -> WebhookEndpointPayload:
            require_partner(ctx, "webhooks:write")
            _, pk = from_global(input.id, expect="WebhookEndpoint")
            async with ctx.tx() as conn:
                secret = await webhooks.rotate_secret(conn, endpoint_id=pk)
            return WebhookEndpointPayload(webhook_endpoint=await WebhookEndpoint.load(info, pk), secret=secret,
                                          user_errors=[])

        return await attempt(work, user_errors_only(WebhookEndpointPayload))

    @strawberry.mutation(description="Partners (`webhooks:write`): send a delivery's event again (same event id).")
    async def replay_webhook_delivery(self, info: Info, input: ReplayWebhookDeliveryInput) -> WebhookDeliveryPayload:
        ctx = info.context

        async def work() -> WebhookDeliveryPayload:
            require_partner(ctx, "webhooks:write")
            _, pk = from_global(input.id, expect="WebhookDelivery")
            async with ctx.tx() as conn:
                new_pk = await webhooks.replay(conn, delivery_id=pk)
            # After commit. Not sent (no broker, a failure)? The workers' sweep sends it.
            if ctx.queue is not None:
                with contextlib.suppress(Exception):
                    await ctx.queue.asend(webhooks.DELIVER_ACTOR, new_pk, queue_name=webhooks.WEBHOOK_QUEUE)
                    async with ctx.tx() as conn:
                        await webhooks.mark_enqueued(conn, [new_pk])
            return WebhookDeliveryPayload(webhook_delivery=await WebhookDelivery.load(info, new_pk), user_errors=[])

        return await attempt(work, user_errors_only(WebhookDeliveryPayload))

    @strawberry.mutation(name="createOAuthClient", description="Tenant admins: an OAuth 2 client through which "
                         "supporters link their Merci account to your platform (authorization code with PKCE).")
    async def create_oauth_client(self, info: Info, input: CreateOAuthClientInput) -> CreateOAuthClientPayload:
        ctx = info.context

        async def work() -> CreateOAuthClientPayload:
            ctx.require_tenant_admin()
            async with ctx.tx() as conn:
                pk, _, secret = await oauth.create_client(
                    conn, tenant_id=ctx.principal.tenant_id, name=input.name, redirect_uris=input.redirect_uris,
                    created_by=ctx.principal.account_id)
            return CreateOAuthClientPayload(oauth_client=await OAuthClient.load(info, pk), client_secret=secret,
                                            user_errors=[])

        return await attempt(work, user_errors_only(CreateOAuthClientPayload))

    @strawberry.mutation(description="The supporter, or the partner: end a linked account at once.")
    async def revoke_linked_account(self, info: Info, input: RevokeLinkedAccountInput) -> LinkedAccountPayload:
        ctx = info.context

        async def work() -> LinkedAccountPayload:
            _, pk = from_global(input.id, expect="LinkedAccount")
            async with ctx.tx() as conn:
                row = await oauth.link(conn, link_id=pk)
                if row is None or not may_see_link(ctx, row):
                    raise UserError("NOT_FOUND", "no such linked account", "id")
                await oauth.revoke_link(conn, link_id=pk)
            return LinkedAccountPayload(linked_account=await LinkedAccount.load(info, pk), user_errors=[])

        return await attempt(work, user_errors_only(LinkedAccountPayload))
