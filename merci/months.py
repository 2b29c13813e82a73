"""A supporter's month: the projected split while open (the close's own rule,
merci.split), the posted journal once closed; a creator's earnings by month."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import asyncpg

from merci.budgets import month_budget_sql
from merci.paging import Keyset
from merci.split import projected


@dataclass
class Share:
    thing_id: int
    amount: int
    in_escrow: bool


@dataclass
class SupporterMonth:
    period: date
    status: str  # open | closing | closed
    budget: int
    charge: int
    fee: int
    clicks: int
    shares: list[Share] = field(default_factory=list)


def clicked(*, supporter_id: int) -> Keyset:
    """The months a supporter clicked in (any source: their clicks are what a month
    splits), newest first, keyed by period."""
    return Keyset("select distinct period from clicks where supporter_id = $1", (supporter_id,),
                  key="period", key_type="date")


async def budget_for(conn: asyncpg.Connection, *, account_id: int, period: date, default: int) -> int:
    value = await conn.fetchval(month_budget_sql(account="$1", period="$2::date"), account_id, period)
    return int(value) if value is not None else default


async def supporter_month(conn: asyncpg.Connection, *, supporter_id: int, period: date, default_budget: int,
                          currency: str) -> SupporterMonth:
    close = await conn.fetchval("select status from month_closes where period = $1", period)
    status = {"done": "closed", None: "open"}.get(close, "closing")
    budget = await budget_for(conn, account_id=supporter_id, period=period, default=default_budget)
    clicks = int(await conn.fetchval(
        "select count(*) from clicks where supporter_id = $1 and period = $2", supporter_id, period))
    if status == "closed":
        # Read the journal's entries only: those crediting other tenants' creators are
        # visible through the journal's tenant, their ledger accounts are not.
        rows = await conn.fetch(
            "select e.amount, e.thing_id, t.owner_id from journals j join entries e on e.journal_id = j.id"
            " left join things t on t.id = e.thing_id where j.idem_key = $1 order by e.id",
            f"close:{period.isoformat()}:{supporter_id}")
        charge = -sum(r["amount"] for r in rows if r["amount"] < 0)
        shares = [Share(r["thing_id"], r["amount"], r["owner_id"] is None) for r in rows if r["thing_id"]]
        return SupporterMonth(period, status, budget, charge, charge - sum(s.amount for s in shares), clicks, shares)
    split = await projected(conn, period=period, supporter_id=supporter_id, default_budget=default_budget,
                            currency=currency)
    if not split:
        return SupporterMonth(period, status, budget, 0, 0, clicks)
    first = split[0]
    return SupporterMonth(period, status, budget, first["charge"], first["fee"], clicks,
                          [Share(r["thing_id"], r["amount"], r["owner_id"] is None) for r in split])


async def earnings_by_month(conn: asyncpg.Connection, *, account_id: int, currency: str) -> list[tuple[date, int]]:
    rows = await conn.fetch(
        "select j.period, sum(e.amount)::bigint as amount from ledger_accounts la"
        "  join entries e on e.ledger_account_id = la.id join journals j on j.id = e.journal_id"
        " where la.kind = 'creator' and la.owner_account_id = $1 and la.currency = $2 and e.amount > 0"
        "   and j.period is not null group by j.period order by j.period desc", account_id, currency)
    return [(r["period"], int(r["amount"])) for r in rows]
