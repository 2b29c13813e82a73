from __future__ import annotations

import strawberry

from api.things.types import Thing
from graph.context import Info
from graph.errors import UserErrorType, attempt, user_errors_only
from merci import things
from merci.ids import from_global


@strawberry.input
class SubmitThingInput:
    url: str
    title: str
    description: str = ""
    category: str = "rest"
    language: str | None = None
    tags: list[str] = strawberry.field(default_factory=list)
    hidden: bool = False


@strawberry.input
class ClaimThingInput:
    thing_id: strawberry.ID


@strawberry.type
class ThingPayload:
    thing: Thing | None
    user_errors: list[UserErrorType]


@strawberry.type
class ThingMutations:
    @strawberry.mutation(description="Register a thing by URL. It is yours when a site you verified covers it;"
                         " otherwise it belongs to the creator whose verified site does, or waits unclaimed.")
    async def submit_thing(self, info: Info, input: SubmitThingInput) -> ThingPayload:
        ctx = info.context

        async def work() -> ThingPayload:
            me = ctx.require_account()
            async with ctx.tx() as conn:
                pk = await things.submit_thing(
                    conn, tenant_id=ctx.principal.tenant_id, owner_id=me, url=input.url, title=input.title,
                    description=input.description, category=input.category, language=input.language,
                    tags=input.tags, hidden=input.hidden)
            return ThingPayload(thing=await Thing.load(info, pk), user_errors=[])

        return await attempt(work, user_errors_only(ThingPayload))

    @strawberry.mutation(description="Claim a thing covered by a site you verified; its escrow is released to you.")
    async def claim_thing(self, info: Info, input: ClaimThingInput) -> ThingPayload:
        ctx = info.context

        async def work() -> ThingPayload:
            me = ctx.require_account()
            _, pk = from_global(input.thing_id, expect="Thing", field="thingId")
            async with ctx.tx() as conn:
                # The escrow moves in the same transaction (merci_assign_thing).
                await things.claim_thing(conn, owner_id=me, thing_id=pk)
            return ThingPayload(thing=await Thing.load(info, pk), user_errors=[])

        return await attempt(work, user_errors_only(ThingPayload))
