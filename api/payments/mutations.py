from __future__ import annotations

import logging

import strawberry

from api.payments.types import PayoutMethod, PayoutMethodKind, Refund, TopUp, TopUpOptions
from graph.context import Info
from graph.errors import UserErrorType, attempt, user_errors_only
from graph.money import Money
from merci import accounts, payout_methods, refunds, topups
from merci.errors import Checks, UserError
from merci.ids import from_global
from merci.money import parse_amount
from merci.stripe_api import StripeError, for_settings

log = logging.getLogger("merci.payments")


@strawberry.input
class StartTopUpInput:
    amount: int = strawberry.field(description="Minor units (cents), within topUpOptions' bounds.")
    idempotency_key: str = strawberry.field(description="Retry-safe: one key, one top-up (and one checkout).")


@strawberry.type
class StartTopUpPayload:
    top_up: TopUp | None
    checkout_url: str | None = strawberry.field(description="Send the supporter here to pay; the balance grows "
                                                           "when Stripe confirms the payment.")
    user_errors: list[UserErrorType]


@strawberry.input
class RequestRefundInput:
    top_up_id: strawberry.ID
    idempotency_key: str = strawberry.field(description="Retry-safe: one key, one refund.")
    amount: int | None = strawberry.field(default=None, description="Minor units; default: all of this top-up "
                                                                    "that is still unspent.")


@strawberry.type
class RefundPayload:
    refund: Refund | None
    user_errors: list[UserErrorType]


@strawberry.input
class SetPayoutMethodInput:
    method: PayoutMethodKind
    iban: str | None = strawberry.field(default=None, description="For SEPA: your IBAN.")
    bic: str | None = strawberry.field(default=None, description="For SEPA: your bank's BIC (found from the "
                                                                 "IBAN when left out).")
    holder: str | None = strawberry.field(default=None, description="For SEPA: the account holder's name.")


@strawberry.type
class PayoutMethodPayload:
    payout_method: PayoutMethod | None
    user_errors: list[UserErrorType]


@strawberry.input
class StartStripeOnboardingInput:
    country: str = strawberry.field(default="FR", description="Your country (ISO 3166-1 alpha-2).")


@strawberry.type
class StripeOnboardingPayload:
    url: str | None = strawberry.field(description="Stripe's onboarding page: finish it to be paid out.")
    user_errors: list[UserErrorType]


def _stripe_or_refuse(info: Info):  # type: ignore[no-untyped-def]
    api = for_settings(info.context.settings)
    if api is None:
        raise UserError("PROVIDER_UNAVAILABLE", "card payments are not configured here (STRIPE_API_KEY)")
    return api


@strawberry.type
class PaymentQueries:
    @strawberry.field(description="What a card top-up may be, and whether cards are taken here.")
    def top_up_options(self, info: Info) -> TopUpOptions:
        s = info.context.settings
        return TopUpOptions(presets=[Money.make(p, s.currency) for p in s.topup_presets],
                            minimum=Money.make(s.topup_min, s.currency), maximum=Money.make(s.topup_max, s.currency),
                            cards=bool(s.stripe_api_key))


@strawberry.type
class PaymentMutations:
    @strawberry.mutation(description="Start a card top-up: answers Stripe Checkout's URL. Your balance grows "
                                     "only once Stripe confirms the payment.")
    async def start_top_up(self, info: Info, input: StartTopUpInput) -> StartTopUpPayload:
        ctx = info.context

        async def work() -> StartTopUpPayload:
            me = ctx.require_account()
            accounts.require_verified(ctx.principal)
            s = ctx.settings
            checks = Checks()
            amount = checks(topups.check_amount, input.amount, s)
            key = checks(topups.check_key, input.idempotency_key)
            api = checks(_stripe_or_refuse, info)
            checks.done()
            async with ctx.tx() as conn:
                t = await topups.create(conn, s, tenant_id=ctx.principal.tenant_id, account_id=me, amount=amount,
                                        idempotency_key=key)
            if t.status == "created":
                base = s.public_url.rstrip("/")
                try:
                    session = await topups.open_session(api, t, success_url=f"{base}/topup?paid={t.id}",
                                                        cancel_url=f"{base}/topup?cancelled={t.id}")
                except StripeError as err:
                    raise UserError("PAYMENT_REFUSED", f"Stripe refused the checkout: {err.message}") from err
                async with ctx.tx() as conn:
                    t = await topups.record_session(conn, topup_id=t.id, session=session)
            return StartTopUpPayload(top_up=TopUp.of(t), checkout_url=TopUp.of(t).checkout_url, user_errors=[])

        return await attempt(work, user_errors_only(StartTopUpPayload))

    @strawberry.mutation(description="Send unspent balance back to the card a top-up came from (at most what is "
                                     "left of that top-up, and unspent).")
    async def request_refund(self, info: Info, input: RequestRefundInput) -> RefundPayload:
        ctx = info.context

        async def work() -> RefundPayload:
            me = ctx.require_account()
            accounts.require_verified(ctx.principal)
            checks = Checks()
            topup = checks(from_global, str(input.top_up_id), expect="TopUp", field="topUpId")
            key = checks(topups.check_key, input.idempotency_key)
            if input.amount is not None:
                checks(parse_amount, input.amount)
            checks.done()
            async with ctx.tx() as conn:
                r = await refunds.request(conn, tenant_id=ctx.principal.tenant_id, account_id=me, topup_id=topup[1],
                                          amount=input.amount, idempotency_key=key)
            if r.status == "requested" and ctx.queue is not None:
                try:  # after commit; should it fail, the scheduler sends it later
                    await ctx.queue.asend(refunds.REFUND_ACTOR, r.id, queue_name=refunds.REFUND_QUEUE)
                except Exception:
                    log.exception("refund %s: not enqueued; the scheduler will send it", r.id)
            return RefundPayload(refund=Refund.of(r), user_errors=[])

        return await attempt(work, user_errors_only(RefundPayload))

    @strawberry.mutation(description="Choose how your payouts reach you: SEPA (IBAN) or Stripe (after onboarding).")
    async def set_payout_method(self, info: Info, input: SetPayoutMethodInput) -> PayoutMethodPayload:
        ctx = info.context

        async def work() -> PayoutMethodPayload:
            me = ctx.require_account()
            accounts.require_verified(ctx.principal)
            method = input.method.value
            iban = bic = holder = None
            if method == "dev" and not ctx.settings.dev_env:
                raise UserError("PROVIDER_UNAVAILABLE", "the dev payout provider is disabled here", "method")
            if method == "sepa":
                checks = Checks()
                pair = checks(payout_methods.check_iban, input.iban, input.bic)
                holder = checks(payout_methods.check_holder, input.holder)
                checks.done()
                iban, bic = pair
            async with ctx.tx() as conn:
                m = await payout_methods.choose(conn, tenant_id=ctx.principal.tenant_id, account_id=me,
                                                method=method, iban=iban, bic=bic, holder=holder)
            return PayoutMethodPayload(payout_method=PayoutMethod.of(m), user_errors=[])

        return await attempt(work, user_errors_only(PayoutMethodPayload))

    @strawberry.mutation(description="Set up (or finish) your Stripe Express account to be paid out by Stripe.")
    async def start_stripe_onboarding(self, info: Info, input: StartStripeOnboardingInput) -> StripeOnboardingPayload:
        ctx = info.context

        async def work() -> StripeOnboardingPayload:
            me = ctx.require_account()
            accounts.require_verified(ctx.principal)
            country = input.country.strip().upper()
            if len(country) != 2 or not country.isalpha():
                raise UserError("INVALID_COUNTRY", "a country code such as FR or DE", "country")
            api = _stripe_or_refuse(info)
            base = ctx.settings.public_url.rstrip("/")
            try:
                async with ctx.tx() as conn:
                    url = await payout_methods.onboarding_link(
                        conn, api, account_id=me, country=country,
                        return_url=f"{base}/account?stripe=done", refresh_url=f"{base}/account?stripe=again")
            except StripeError as err:
                raise UserError("PAYMENT_REFUSED", f"Stripe refused: {err.message}") from err
            return StripeOnboardingPayload(url=url, user_errors=[])

        return await attempt(work, user_errors_only(StripeOnboardingPayload))
