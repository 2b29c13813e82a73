"""Monthly budgets, balances and top-ups."""

from __future__ import annotations

import asyncpg

from merci import ledger
from merci.errors import UserError
from merci.money import Money, parse_amount
from merci.payments import Charge
from merci.periods import sql_month_end

MIN_BUDGET = 200
PRESETS = (200, 500, 1000, 2000)
MAX_TOPUP = 100_000  # 1000.00 per top-up


async def set_monthly_budget(
    conn: asyncpg.Connection, *, tenant_id: int, account_id: int, amount: object, currency: str
) -> int:
    minor = parse_amount(amount, minimum=1)
    if minor < MIN_BUDGET:
        raise UserError("BUDGET_TOO_SMALL", f"the monthly budget is at least {Money(MIN_BUDGET, currency)}",
                        "amount")
    if minor > 1_000_000:
        raise UserError("AMOUNT_TOO_LARGE", "the monthly budget is at most 10,000.00", "amount")
    await conn.execute(
        "insert into budget_changes (tenant_id, account_id, amount, currency) values ($1, $2, $3, $4)",
        tenant_id, account_id, minor, currency,
    )
    return minor


def month_budget_sql(*, account: str, period: str) -> str:
    """SQL: the budget of `account` for the month `period` (SQL expressions): the last one
    set before the month ends, at midnight UTC; no row when none was set (the default)."""
    return (f"select b.amount from budget_changes b where b.account_id = {account}"
            f" and b.created_at < {sql_month_end(period)} order by b.created_at desc, b.id desc limit 1")


async def monthly_budget(conn: asyncpg.Connection, *, account_id: int, default: int) -> int:
    value = await conn.fetchval(
        "select amount from budget_changes where account_id = $1 order by created_at desc, id desc limit 1",
        account_id,
    )
    return int(value) if value is not None else default


async def balance(conn: asyncpg.Connection, *, account_id: int, currency: str) -> int:
    return await ledger.owner_balance(conn, kind="supporter", owner_account_id=account_id, currency=currency)


async def earnings(conn: asyncpg.Connection, *, account_id: int, currency: str) -> int:
    return await ledger.owner_balance(conn, kind="creator", owner_account_id=account_id, currency=currency)


def check_topup(amount: object) -> int:
    minor = parse_amount(amount, minimum=MIN_BUDGET)
    if minor > MAX_TOPUP:
        raise UserError("AMOUNT_TOO_LARGE", "a top-up is at most 1,000.00", "amount")
    return minor


async def credit_topup(conn: asyncpg.Connection, *, tenant_id: int, account_id: int, charge: Charge) -> bool:
    """Money in: external → the supporter's balance. Idempotent on the provider's reference.
    As merci_system (a provider's confirmation, the demo): the API role posts nothing itself."""
    posted: bool = await conn.fetchval(
        "select merci_credit_topup($1, $2, $3, $4, $5, $6)", tenant_id, account_id, charge.amount.minor,
        charge.amount.currency, charge.provider, charge.reference)
    return posted


async def credit_dev_topup(conn: asyncpg.Connection, *, charge: Charge) -> bool:
    """The `dev` provider's top-up, from the API (merci_app): for the transaction's own
    account only, and only where `merci migrate` turned dev money on (development and
    tests), whatever the application believes its environment is."""
    if charge.provider != "dev":
        raise UserError("UNKNOWN_PROVIDER", "this provider credits a balance when it confirms the payment",
                        "provider")
    try:
        async with conn.transaction():
            posted: bool = await conn.fetchval("select merci_dev_topup($1, $2, $3)", charge.amount.minor,
                                               charge.amount.currency, charge.reference)
    except asyncpg.InsufficientPrivilegeError as exc:
        raise UserError("PROVIDER_UNAVAILABLE", "the dev payment provider is disabled here", "provider") from exc
    return posted


async def lock_balance(conn: asyncpg.Connection, *, account_id: int) -> None:
    """Hold a supporter's balance still until the transaction ends, for money taken out of
    it outside the close (a refund, a dispute's freeze): one such at a time, and none
    while a running close's shard charges this supporter. The shard reads balances after
    taking its lock, so it sees what was taken; what is taken here is read after the
    shard committed."""
    from merci import locks
    from merci.periods import month_key

    await conn.execute("select pg_advisory_xact_lock(hashtextextended($1::text || $2::bigint, 0))",
                       locks.BALANCE_PREFIX, account_id)
    for r in await conn.fetch(
            "select period, (select count(*) from unnest(bounds) b where b <= $1)::int - 1 as shard"
            "  from month_closes where status = 'running'", account_id):
        if r["shard"] >= 0:
            await conn.execute("select pg_advisory_xact_lock($1, $2)", locks.CLOSE_SHARD,
                               month_key(r["period"]) * 4096 + r["shard"])
