from __future__ import annotations

from datetime import UTC, datetime

import strawberry

from api.clicks.types import ClickReceipt, ClickStatus
from graph.context import Info
from graph.errors import UserErrorType, attempt, user_errors_only
from merci import clicks
from merci.errors import UserError
from merci.ids import from_global


@strawberry.input
class FlattrInput:
    thing_id: strawberry.ID | None = strawberry.field(default=None, description="Either a thing id…")
    url: str | None = strawberry.field(default=None, description="…or a URL (unknown URLs are auto-submitted).")
    idempotency_key: str = strawberry.field(description="Unique per click; a retry with the same key counts once.")


@strawberry.type
class FlattrPayload:
    click: ClickReceipt | None = strawberry.field(description="PENDING: accepted and queued for ingestion.")
    user_errors: list[UserErrorType]


@strawberry.type
class ClickMutations:
    @strawberry.mutation(description="Click (flattr) a thing: answered at once, counted by the workers.")
    async def flattr(self, info: Info, input: FlattrInput) -> FlattrPayload:
        ctx = info.context

        async def work() -> FlattrPayload:
            me = ctx.require_account()
            thing_id = None
            if input.thing_id is not None:
                thing_id = from_global(input.thing_id, expect="Thing", field="thingId")[1]
            now = datetime.now(UTC)
            async with ctx.tx() as conn:
                accepted = await clicks.precheck(
                    conn, supporter_id=me, tenant_id=ctx.principal.tenant_id, thing_id=thing_id, url=input.url,
                    idempotency_key=input.idempotency_key, currency=ctx.settings.currency, now=now)
            batcher = ctx.clicks
            if batcher is None:
                raise UserError("UNAVAILABLE", "clicks cannot be accepted right now; try again", None)
            try:
                await batcher.submit(accepted)
            except Exception as exc:  # broker down: not accepted, and the client may retry safely
                raise UserError("UNAVAILABLE", "clicks cannot be accepted right now; try again", None) from exc
            return FlattrPayload(click=ClickReceipt(
                idempotency_key=accepted.idempotency_key, status=ClickStatus.PENDING, reason=None,
                period=f"{clicks.period_of(now):%Y-%m}", thing_pk=accepted.thing_id), user_errors=[])

        return await attempt(work, user_errors_only(FlattrPayload))
