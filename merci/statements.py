"""Monthly statements: what a month did with an account's money, read from the ledger.

Per supporter: the month's charge, its fee and where every cent went (merci.months, the
close's own journal once closed), and the money that came and went that month (card and
dev top-ups, refunds, what disputes froze). Per creator: what the month's closes paid them,
from how many supporters, and what was paid out during the month. Months are calendar
months in UTC: a journal belongs to the month of its `period` (closes) or of its time.
Run as the account (RLS): nothing here reads another account's rows. Once a month is
closed, a money worker mails each account it charged or paid a link to its statement
(`mail_month`, as merci_system), once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import asyncpg

from merci import mail, months
from merci.config import Settings
from merci.i18n import DEFAULT, N_, translations
from merci.periods import sql_month_end
from merci.queue import MONEY


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


# ------------------------------------------------------------------ by mail, once a month is closed

MAIL_ACTOR = "statements.mail_month"
MAIL_QUEUE = MONEY
MAIL_BATCH = 500
SUBJECT = N_("Your Merci statement for %(period)s")
BODY = N_("Hello %(name)s,\n\nThe month of %(period)s is closed. Your statement (what you were charged, where "
          "every cent went, what you earned) is here:\n\n%(link)s\n\nAs a PDF: %(pdf)s\n")

# Accounts the close of $1 charged (their close journal's key names them) or paid (a share
# to their earnings), with a verified address, not yet mailed: at most $2.
DUE_SQL = """
with touched as (
  select split_part(j.idem_key, ':', 3)::bigint as account_id from journals j
   where j.kind = 'month_close' and j.period = $1 and j.idem_key like 'close:%'
  union
  select la.owner_account_id from journals j join entries e on e.journal_id = j.id
    join ledger_accounts la on la.id = e.ledger_account_id and la.kind = 'creator'
   where j.kind = 'month_close' and j.period = $1 and e.amount > 0)
select a.id, a.tenant_id, a.handle, a.display_name, p.email from touched t
  join accounts a on a.id = t.account_id join account_private p on p.account_id = a.id
 where p.deleted_at is null and p.email_verified_at is not null
   and not exists (select 1 from statement_mails m where m.account_id = a.id and m.period = $1)
 order by a.id limit $2"""


async def months_to_mail(conn: asyncpg.Connection) -> list[date]:
    """Closed months whose statements are not all mailed yet (the scheduler's)."""
    return [r["period"] for r in await conn.fetch(
        "select c.period from month_closes c where c.status = 'done'"
        " and not exists (select 1 from statement_months s where s.period = c.period) order by c.period")]


async def mail_month(conn: asyncpg.Connection, settings: Settings, *, period: date) -> list[int]:
    """Write the statement mail of everyone the close of `period` touched, once each (as
    merci_system); the mails' ids, for `mail.send`. Re-runnable: the mailed are skipped."""
    done = await conn.fetchval("select status = 'done' from month_closes where period = $1", period)
    if not done:
        return []
    t = translations(DEFAULT)
    label, base = f"{period:%Y-%m}", settings.public_url.rstrip("/")
    ids: list[int] = []
    while True:
        async with conn.transaction():
            due = await conn.fetch(DUE_SQL, period, MAIL_BATCH)
            for r in due:
                body = t.gettext(BODY) % {"name": r["display_name"] or r["handle"], "period": label,
                                          "link": f"{base}/account/months/{label}",
                                          "pdf": f"{base}/account/statements/{label}.pdf"}
                m = mail.Mail("monthly_statement", r["email"], t.gettext(SUBJECT) % {"period": label}, body)
                mail_id = await mail.queue(conn, tenant_id=r["tenant_id"], account_id=r["id"], mail=m)
                await conn.execute("insert into statement_mails (account_id, period, mail_id) values ($1, $2, $3)",
                                   r["id"], period, mail_id)
                ids.append(mail_id)
            if len(due) < MAIL_BATCH:
                await conn.execute("insert into statement_months (period) values ($1) on conflict do nothing",
                                   period)
                return ids
