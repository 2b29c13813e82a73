from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import strawberry
import structlog
from starlette.types import Scope

from api.clicks.types import ClickReceipt, ClickStatus
from graph.context import Context, Info
from graph.errors import UserErrorType, attempt, user_errors_only
from graph.fastpath import FastMutation
from graph.ratelimit import Hit, click_hits, client_ip, count_click
from merci import accounts, clicks
from merci.accounts import Principal
from merci.clicks import Accepted
from merci.errors import Checks, UserError
from merci.ids import from_global
from merci.periods import period_of

log = structlog.get_logger(__name__)


@strawberry.input
class FlattrInput:
    thing_id: strawberry.ID | None = strawberry.field(default=None, description="Either a thing id…")
    url: str | None = strawberry.field(default=None, description="…or a URL (unknown URLs are auto-submitted).")
    idempotency_key: str = strawberry.field(description="Unique per click; a retry with the same key counts once.")


@strawberry.type
class FlattrPayload:
    click: ClickReceipt | None = strawberry.field(description="PENDING: accepted and queued for ingestion.")
    user_errors: list[UserErrorType]


async def accept(ctx: Context, *, thing_id: str | None, url: str | None, idempotency_key: str) -> Accepted:
    """Check one click and hand it to the broker; raises UserError. What the API
    answered is recorded for `clickReceipt` (merci.clicks: receipts)."""
    me = ctx.require_account()
    accounts.require_verified(ctx.principal)  # in memory: the principal says it
    tenant_id = ctx.principal.tenant_id
    await count_click(ctx.limiter, ctx.request.scope, me)
    try:
        checks = Checks()  # a bad id and a bad key are both reported
        found = None if thing_id is None else checks(from_global, thing_id, expect="Thing", field="thingId")
        pk = None if found is None else found[1]
        # (0 for an id that is not one: given all the same, and refused already)
        request = checks(clicks.check_request, supporter_id=me, tenant_id=tenant_id,
                         thing_id=None if thing_id is None else pk or 0, url=url, idempotency_key=idempotency_key,
                         client_hash=clicks.client_hash(client_ip(ctx.request.scope), ctx.settings.secret_key))
        checks.done()
    except UserError as err:  # refused before any check (cold: a write on this path costs the click nothing)
        row = clicks.refused_row(supporter_id=me, tenant_id=tenant_id, key=idempotency_key, error=err, thing_id=None,
                                 now=datetime.now(UTC))
        if row is not None:
            async with ctx.tx() as conn:
                await clicks.record_receipts(conn, [row])
        raise
    if ctx.prechecks is not None:  # concurrent clicks share their checks, their broker message and receipts
        try:
            return await ctx.prechecks.submit(request)  # type: ignore[no-any-return]
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.warning("click precheck failed", exc_info=exc)
            raise UserError("UNAVAILABLE", "clicks cannot be accepted right now; try again", None) from exc
    now = datetime.now(UTC)
    async with ctx.tx() as conn:
        [answer] = await clicks.precheck_many(conn, [request], currency=ctx.settings.currency, now=now)
        if isinstance(answer, UserError):
            row = clicks.refused_row(supporter_id=me, tenant_id=tenant_id, key=request.idempotency_key, error=answer,
                                     thing_id=pk, now=now)
            await clicks.record_receipts(conn, [] if row is None else [row])
    if isinstance(answer, UserError):
        raise answer
    if ctx.clicks is None:
        raise UserError("UNAVAILABLE", "clicks cannot be accepted right now; try again", None)
    try:
        await ctx.clicks.submit(answer)
    except Exception as exc:  # broker down: not accepted, and the client may retry safely
        raise UserError("UNAVAILABLE", "clicks cannot be accepted right now; try again", None) from exc
    async with ctx.tx() as conn:
        await clicks.record_receipts(conn, [clicks.queued_row(answer)])
    return answer


@strawberry.type
class ClickMutations:
    @strawberry.mutation(description="Click (flattr) a thing: answered at once, counted by the workers.")
    async def flattr(self, info: Info, input: FlattrInput) -> FlattrPayload:
        async def work() -> FlattrPayload:
            accepted = await accept(info.context, thing_id=input.thing_id, url=input.url,
                                    idempotency_key=input.idempotency_key)
            return FlattrPayload(click=ClickReceipt(
                idempotency_key=accepted.idempotency_key, status=ClickStatus.PENDING, reason=None,
                period=f"{period_of(accepted.accepted_at):%Y-%m}", thing_pk=accepted.thing_id),
                user_errors=[])

        return await attempt(work, user_errors_only(FlattrPayload))


_PENDING = ClickStatus.PENDING.name


async def flattr_fast(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """`flattr` for graph.fastpath: the same work as the resolver, the payload as data."""
    given = args["input"]
    try:
        accepted = await accept(ctx, thing_id=given.get("thingId"), url=given.get("url"),
                                idempotency_key=given["idempotencyKey"])
    except UserError as err:
        return {"click": None, "userErrors": [
            {"field": [e.field] if e.field else None, "message": e.message, "code": e.code} for e in err.each()]}
    return {"click": {"idempotencyKey": accepted.idempotency_key, "status": _PENDING, "reason": None,
                      "period": f"{period_of(accepted.accepted_at):%Y-%m}"},
            "userErrors": []}


def flattr_limits(scope: Scope, principal: Principal) -> list[Hit]:
    """The click's limits, counted with the request's (graph.ratelimit.admit) when `accept`
    would count them: for a verified account."""
    if principal.account_id is None or not principal.email_verified:
        return []
    return click_hits(scope, principal.account_id)


FAST_MUTATIONS = {"flattr": FastMutation(flattr_fast, {
    "FlattrPayload": frozenset({"click", "userErrors"}),
    "ClickReceipt": frozenset({"idempotencyKey", "status", "reason", "period"}),
    "UserError": frozenset({"field", "message", "code"}),
}, limits=flattr_limits)}
