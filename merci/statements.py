"""Monthly statements: what a month did with an account's money, read from the ledger.

Per supporter: the month's charge, its fee and where every cent went (merci.months, the
close's own journal once closed), and the money that came and went that month (card and
dev top-ups, refunds, what disputes froze). Per creator: what the month's closes paid them,
from how many supporters, and what was paid out during the month. Months are calendar
months in UTC: a journal belongs to the month of its `period` (closes) or of its time.
Run as the account (RLS): nothing here reads another account's rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import asyncpg

from merci import months
from merci.periods import sql_month_end


@dataclass(frozen=True)
class SupporterStatement:
    month: months.SupporterMonth
    topped_up: int
    refunded: int
    frozen: int  # frozen by disputes during the month (net of what came back)
    balance_end: int  # the balance at the month's end (or now, for the current month)


@dataclass(frozen=True)
class CreatorStatement:
    period: date
    earned: int  # the month's close shares and escrow releases credited to the creator
    supporters: int  # how many supporters' closes paid them
    paid_out: int  # payouts sent during the month


MONTH_START = "($2::date::timestamp at time zone 'UTC')"  # midnight UTC, whatever the session's zone


def _flows_sql(kind: str) -> str:
    """SQL: the sum of one ledger kind's entries of an owner ($1) in a month ($2), by journal kind."""
    return ("select j.kind, sum(e.amount)::bigint as amount from ledger_accounts la"
            " join entries e on e.ledger_account_id = la.id join journals j on j.id = e.journal_id"
            f" where la.kind = '{kind}' and la.owner_account_id = $1 and la.currency = $3"
            f"   and j.created_at >= {MONTH_START} and j.created_at < {sql_month_end('$2::date')}"
            " group by j.kind")


async def supporter(conn: asyncpg.Connection, *, account_id: int, period: date, currency: str,
                    default_budget: int) -> SupporterStatement:
    month = await months.supporter_month(conn, supporter_id=account_id, period=period,
                                         default_budget=default_budget, currency=currency)
    flows = {r["kind"]: int(r["amount"]) for r in await conn.fetch(_flows_sql("supporter"), account_id, period,
                                                                     currency)}
    frozen = {r["kind"]: int(r["amount"]) for r in await conn.fetch(_flows_sql("frozen"), account_id, period,
                                                                      currency)}
    balance_end = await conn.fetchval(
        "select coalesce(sum(e.amount), 0)::bigint from ledger_accounts la"
        " join entries e on e.ledger_account_id = la.id join journals j on j.id = e.journal_id"
        " where la.kind = 'supporter' and la.owner_account_id = $1"
        f" and la.currency = $3 and (j.created_at < {sql_month_end('$2::date')} or j.period = $2::date)",
        account_id, period, currency)
    return SupporterStatement(
        month=month, topped_up=flows.get("topup", 0),
        refunded=-flows.get("refund", 0) - flows.get("refund_reversal", 0),
        frozen=sum(frozen.values()), balance_end=int(balance_end))


async def creator(conn: asyncpg.Connection, *, account_id: int, period: date, currency: str) -> CreatorStatement:
    row = await conn.fetchrow(
        "select coalesce(sum(e.amount), 0)::bigint as earned,"
        "       count(distinct j.id) filter (where j.kind = 'month_close') as supporters"
        "  from ledger_accounts la join entries e on e.ledger_account_id = la.id"
        "  join journals j on j.id = e.journal_id"
        " where la.kind = 'creator' and la.owner_account_id = $1 and la.currency = $3 and e.amount > 0"
        "   and j.period = $2::date and j.kind in ('month_close', 'escrow_release')", account_id, period, currency)
    paid = await conn.fetchval(
        "select coalesce(sum(amount), 0)::bigint from payouts where account_id = $1 and currency = $3"
        f" and status = 'sent' and settled_at >= {MONTH_START} and settled_at < {sql_month_end('$2::date')}",
        account_id, period, currency)
    return CreatorStatement(period=period, earned=int(row["earned"]), supporters=int(row["supporters"]),
                            paid_out=int(paid))
