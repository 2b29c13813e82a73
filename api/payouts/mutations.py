from __future__ import annotations

import logging

import strawberry

from api.payouts.types import Payout
from graph.context import Info
from graph.errors import UserErrorType, attempt, user_errors_only
from graph.money import Money
from merci import accounts, payout_methods, payouts
from merci.errors import Checks
from merci.money import parse_amount

log = logging.getLogger("merci.payouts")


@strawberry.input
class RequestPayoutInput:
    idempotency_key: str = strawberry.field(description="Retry-safe: one key, one payout.")
    amount: int | None = strawberry.field(
        default=None, description="Minor units (cents); default: all your available earnings. At least the "
                                  "payout threshold.")
    provider: str | None = strawberry.field(
        default=None, description="dev, stripe or sepa; default: your payout method (dev where there is none).")


@strawberry.type
class PayoutPayload:
    payout: Payout | None
    user_errors: list[UserErrorType]


@strawberry.type
class PayoutQueries:
    @strawberry.field(description="The smallest payout a creator may ask for.")
    def payout_threshold(self, info: Info) -> Money:
        s = info.context.settings
        return Money.make(s.payout_threshold, s.currency)


@strawberry.type
class PayoutMutations:
    @strawberry.mutation(description="Ask for your earnings to be paid out. The request is pending until a worker "
                                     "has sent it through the provider; `payout.status` tells the outcome.")
    async def request_payout(self, info: Info, input: RequestPayoutInput) -> PayoutPayload:
        ctx = info.context

        async def work() -> PayoutPayload:
            me = ctx.require_account()
            accounts.require_verified(ctx.principal)
            s = ctx.settings
            async with ctx.tx() as conn:
                method = await payout_methods.of_account(conn, me)
            provider = input.provider or (method.method if method else "dev")
            checks = Checks()  # every field's refusal at once (the provider's up front)
            checks(payout_methods.check_provider, provider, method, env=s.env,
                   stripe_configured=bool(s.stripe_api_key))
            checks(payouts.check_key, input.idempotency_key)
            if input.amount is not None:
                checks(parse_amount, input.amount)
            checks.done()
            async with ctx.tx() as conn:
                p = await payouts.request(conn, tenant_id=ctx.principal.tenant_id, account_id=me,
                                          amount=input.amount, currency=s.currency, threshold=s.payout_threshold,
                                          idempotency_key=input.idempotency_key, provider=provider)
            if p.status == "pending" and ctx.queue is not None:
                # After commit, so that the worker finds the request. Should this fail, the
                # request stays pending and the scheduler sends it later.
                try:
                    await ctx.queue.asend(payouts.PAYOUT_ACTOR, p.id, queue_name=payouts.PAYOUT_QUEUE)
                except Exception:
                    log.exception("payout %s: not enqueued; the scheduler will send it", p.id)
            return PayoutPayload(payout=Payout.of(p), user_errors=[])

        return await attempt(work, user_errors_only(PayoutPayload))
