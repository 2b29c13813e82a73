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


async def release(conn: asyncpg.Connection, *, thing_id: int) -> int:
    """Move a claimed thing's escrow to its owner's earnings. Returns the cents moved.
    One implementation (merci_release_escrow, migration 0015): claims and adoptions
    call it in their own transaction, the worker and the scheduler's sweep through here."""
    async with conn.transaction():
        moved: int = await conn.fetchval("select merci_release_escrow($1)", thing_id)
    return moved


# Claimed things whose escrow still holds cents. Claims release in their own
# transaction and a close shard cannot interleave with a claim (the ownership lock),
# so this finds nothing unless something went wrong; the scheduler releases what it finds.
STRANDED_SQL = f"""
select la.thing_id from ledger_accounts la
  join things t on t.id = la.thing_id and t.owner_id is not null
 where la.kind = 'escrow'
   and ({ledger.account_balance_sql('la.id')}) > 0
 order by 1
"""


async def release_stranded(conn: asyncpg.Connection) -> int:
    """Release every positive escrow of a claimed thing (as merci_system). Returns the cents moved."""
    moved = 0
    for row in await conn.fetch(STRANDED_SQL):
        moved += await release(conn, thing_id=row["thing_id"])
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
