from __future__ import annotations

import strawberry

from api.accounts.types import Account
from graph.context import Info
from graph.errors import UserErrorType, attempt, user_errors_only
from graph.money import Money
from merci import accounts, budgets
from merci.errors import Checks
from merci.payments import provider_for


@strawberry.input
class SetMonthlyBudgetInput:
    amount: int = strawberry.field(description="Minor units (cents); at least 200.")


@strawberry.input
class TopUpInput:
    amount: int = strawberry.field(description="Minor units (cents); at least 200.")
    idempotency_key: str | None = strawberry.field(default=None, description="Retry-safe: one key, one top-up.")
    provider: str = "dev"


@strawberry.type
class BudgetPayload:
    account: Account | None
    user_errors: list[UserErrorType]


@strawberry.type
class BudgetQueries:
    @strawberry.field(description="Suggested monthly budgets.")
    def budget_presets(self, info: Info) -> list[Money]:
        return [Money.make(p, info.context.settings.currency) for p in budgets.PRESETS]

    @strawberry.field(description="The budget a new supporter starts with.")
    def default_budget(self, info: Info) -> Money:
        s = info.context.settings
        return Money.make(s.default_budget, s.currency)


@strawberry.type
class BudgetMutations:
    @strawberry.mutation(description="Set the monthly budget (from this month on).")
    async def set_monthly_budget(self, info: Info, input: SetMonthlyBudgetInput) -> BudgetPayload:
        ctx = info.context

        async def work() -> BudgetPayload:
            me = ctx.require_account()
            async with ctx.tx() as conn:
                await budgets.set_monthly_budget(conn, tenant_id=ctx.principal.tenant_id, account_id=me,
                                                 amount=input.amount, currency=ctx.settings.currency)
            return BudgetPayload(account=await Account.load(info, me), user_errors=[])

        return await attempt(work, user_errors_only(BudgetPayload))

    @strawberry.mutation(description="Add money to the balance through a payment provider.")
    async def top_up(self, info: Info, input: TopUpInput) -> BudgetPayload:
        ctx = info.context

        async def work() -> BudgetPayload:
            from merci.money import Money as DomainMoney

            me = ctx.require_account()
            accounts.require_verified(ctx.principal)
            checks = Checks()  # the amount's refusal with the provider's
            amount = checks(budgets.check_topup, input.amount)
            provider = checks(provider_for, input.provider, env=ctx.settings.env)
            checks.done()
            charge = await provider.charge(account_id=me, amount=DomainMoney(amount, ctx.settings.currency),
                                           idempotency_key=input.idempotency_key or "")
            async with ctx.tx() as conn:
                await budgets.credit_dev_topup(conn, charge=charge)
            return BudgetPayload(account=await Account.load(info, me), user_errors=[])

        return await attempt(work, user_errors_only(BudgetPayload))
