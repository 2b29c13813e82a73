from __future__ import annotations

from datetime import UTC, datetime

import strawberry

from api.subscriptions.types import GLOBAL_ID_TYPE, ThingSubscription
from api.things.types import Thing
from graph.context import Info
from graph.errors import UserErrorType, attempt, user_errors_only
from merci import accounts, subscriptions
from merci.clicks import CLICK_QUEUE
from merci.errors import Checks, UserError
from merci.ids import from_global
from merci.periods import period_of


@strawberry.input
class SubscribeInput:
    thing_id: strawberry.ID
    months: int = strawberry.field(description="1, 3, 6 or 12.")


@strawberry.input
class ThingSubscriptionIdInput:
    id: strawberry.ID


@strawberry.type
class ThingSubscriptionPayload:
    subscription: ThingSubscription | None
    user_errors: list[UserErrorType]


async def _transition(info: Info, input: ThingSubscriptionIdInput, action: str) -> ThingSubscriptionPayload:
    ctx = info.context

    async def work() -> ThingSubscriptionPayload:
        me = ctx.require_account()
        _, pk = from_global(input.id, expect=GLOBAL_ID_TYPE)
        async with ctx.tx() as conn:
            await subscriptions.transition(conn, supporter_id=me, subscription_id=pk, action=action)
        if action == "resume" and ctx.queue is not None:
            await ctx.queue.asend(subscriptions.MATERIALIZE_ACTOR, f"{period_of(datetime.now(UTC)):%Y-%m}", pk,
                                  queue_name=CLICK_QUEUE)
        return ThingSubscriptionPayload(subscription=await ThingSubscription.load(info, pk), user_errors=[])

    return await attempt(work, user_errors_only(ThingSubscriptionPayload))


@strawberry.type
class SubscriptionMutations:
    @strawberry.mutation(description="Click a thing every month for 1, 3, 6 or 12 months, starting now.")
    async def subscribe(self, info: Info, input: SubscribeInput) -> ThingSubscriptionPayload:
        ctx = info.context

        async def work() -> ThingSubscriptionPayload:
            me = ctx.require_account()
            accounts.require_verified(ctx.principal)
            checks = Checks()  # the thing's refusal with the term's
            found = checks(from_global, input.thing_id, expect="Thing", field="thingId")
            checks(subscriptions.check_term, input.months)
            checks.done()
            thing = found[1]
            # Only a thing the caller may see (an unlisted one: its owner's, its tenant's
            # admins', its supporters'): else any supporter could reveal every hidden
            # thing by subscribing to id after id and reading the payload's thing.
            if await Thing.load(info, thing) is None:
                raise UserError("UNKNOWN_THING", "no such thing", "thingId")
            period = period_of(datetime.now(UTC))
            async with ctx.tx() as conn:
                pk = await subscriptions.subscribe(conn, tenant_id=ctx.principal.tenant_id, supporter_id=me,
                                                   thing_id=thing, months=input.months, period=period)
            if ctx.queue is not None:  # after commit; the scheduler catches up if this is lost
                await ctx.queue.asend(subscriptions.MATERIALIZE_ACTOR, f"{period:%Y-%m}", pk, queue_name=CLICK_QUEUE)
            return ThingSubscriptionPayload(subscription=await ThingSubscription.load(info, pk), user_errors=[])

        return await attempt(work, user_errors_only(ThingSubscriptionPayload))

    @strawberry.mutation(description="Pause: paused months are not counted.")
    async def pause_subscription(self, info: Info, input: ThingSubscriptionIdInput) -> ThingSubscriptionPayload:
        return await _transition(info, input, "pause")

    @strawberry.mutation(description="Resume a paused subscription.")
    async def resume_subscription(self, info: Info, input: ThingSubscriptionIdInput) -> ThingSubscriptionPayload:
        return await _transition(info, input, "resume")

    @strawberry.mutation(description="Cancel: no further months are counted.")
    async def cancel_subscription(self, info: Info, input: ThingSubscriptionIdInput) -> ThingSubscriptionPayload:
        return await _transition(info, input, "cancel")
