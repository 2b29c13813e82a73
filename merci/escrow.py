"""Escrow for unclaimed things: released to the creator who claims the thing, or
returned to the supporters who paid into it once the hold period is over.

Both lock the thing's row first, so a claim and a return never both take the
same cents."""

from __future__ import annotations

from datetime import date

import asyncpg

from merci import ledger
from merci.money import Money

RELEASE_ACTOR = "money.release_escrow"
RETURN_ACTOR = "money.return_escrow"


def months_before(period: date, months: int) -> date:
    index = period.year * 12 + period.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


async def release(conn: asyncpg.Connection, *, thing_id: int) -> int:
    """Move a claimed thing's escrow to its owner's earnings. Returns the cents moved."""
    moved = 0
    async with conn.transaction():
        thing = await conn.fetchrow("select owner_id, tenant_id from things where id = $1 for update", thing_id)
        if thing is None or thing["owner_id"] is None:
            return 0
        escrows = await conn.fetch(
            "select la.id, la.tenant_id, la.currency, coalesce(sum(e.amount), 0)::bigint as balance,"
            "       count(e.id) as entries"
            "  from ledger_accounts la left join entries e on e.ledger_account_id = la.id"
            " where la.kind = 'escrow' and la.thing_id = $1 group by la.id order by la.id", thing_id)
        for esc in escrows:
            if esc["balance"] <= 0:
                continue
            creator = await ledger.account_id(conn, kind="creator", tenant_id=thing["tenant_id"],
                                              currency=esc["currency"], owner_account_id=thing["owner_id"])
            # Keyed by the escrow's entry count: a retry after commit finds the same key.
            await ledger.post(
                conn, tenant_id=thing["tenant_id"], kind="escrow_release",
                idem_key=f"escrow_release:{esc['id']}:{esc['entries']}",
                lines=[(esc["id"], Money(-esc["balance"], esc["currency"])),
                       (creator, Money(esc["balance"], esc["currency"]))],
                memo=f"escrow of thing {thing_id} released on claim",
            )
            moved += esc["balance"]
    return moved


RETURN_SQL = """
with due as (
    select e.thing_id, j.period, e.ledger_account_id as escrow, e.amount, e.currency, e.tenant_id as escrow_tenant,
           sl.id as supporter_account, sl.tenant_id as supporter_tenant
      from journals j
      join entries e on e.journal_id = j.id and e.thing_id is not null
      join ledger_accounts la on la.id = e.ledger_account_id and la.kind = 'escrow'
      join entries se on se.journal_id = j.id and se.amount < 0
      join ledger_accounts sl on sl.id = se.ledger_account_id and sl.kind = 'supporter'
      join things t on t.id = e.thing_id and t.owner_id is null
     where j.kind = 'month_close' and j.period = $1
       and not exists (select 1 from escrow_returns r where r.thing_id = e.thing_id and r.period = j.period)
)
select * from due order by thing_id, supporter_account
"""


async def return_due(conn: asyncpg.Connection, *, period: date) -> int:
    """Give back the escrow that `period`'s close put aside for still-unclaimed things."""
    returned = 0
    async with conn.transaction():
        thing_ids = await conn.fetch(
            "select distinct e.thing_id from journals j join entries e on e.journal_id = j.id"
            " join ledger_accounts la on la.id = e.ledger_account_id and la.kind = 'escrow'"
            " where j.kind = 'month_close' and j.period = $1 order by 1", period)
        if not thing_ids:
            return 0
        # Lock the things (in id order: no deadlock with claims), then re-read who is still unclaimed.
        await conn.execute("select 1 from things where id = any($1::bigint[]) order by id for update",
                           [r["thing_id"] for r in thing_ids])
        rows = await conn.fetch(RETURN_SQL, period)
        by_thing: dict[int, list[asyncpg.Record]] = {}
        for r in rows:
            by_thing.setdefault(r["thing_id"], []).append(r)
        for thing_id, parts in by_thing.items():
            currency = parts[0]["currency"]
            lines = []
            for p in parts:
                lines += [(p["escrow"], Money(-p["amount"], currency)),
                          (p["supporter_account"], Money(p["amount"], currency))]
            journal_id = await ledger.post(
                conn, tenant_id=parts[0]["escrow_tenant"], kind="escrow_return",
                idem_key=f"escrow_return:{thing_id}:{period.isoformat()}", lines=lines, period=period,
                memo=f"escrow of unclaimed thing {thing_id} returned after the hold period",
            )
            await conn.execute("insert into escrow_returns (thing_id, period, journal_id) values ($1, $2, $3)"
                               " on conflict do nothing", thing_id, period, journal_id)
            returned += sum(p["amount"] for p in parts)
    return returned
