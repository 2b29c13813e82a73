"""Subscriptions: a standing click on a thing for 1, 3, 6 or 12 months.

Each month of the term is materialized as one click (source 'subscription'),
idempotently: the (subscription, period) row is the proof a month was counted,
and the clicks table's (supporter, thing, period) key means a month never holds
two clicks of one supporter on one thing, subscription or not.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import asyncpg

from merci import locks
from merci.errors import UserError
from merci.paging import Keyset
from merci.periods import month_key

TERMS = (1, 3, 6, 12)
MATERIALIZE_ACTOR = "subscriptions.materialize"

TRANSITIONS = {
    "pause": ({"active"}, "paused"),
    "resume": ({"paused"}, "active"),
    "cancel": ({"active", "paused"}, "cancelled"),
}

SUBSCRIPTION_COLUMNS = "id, thing_id, months, months_used, start_period, status, created_at"


def of_supporter(*, supporter_id: int) -> Keyset:
    """A supporter's subscriptions, newest first."""
    return Keyset(f"select {SUBSCRIPTION_COLUMNS} from subscriptions where supporter_id = $1", (supporter_id,))


async def own_subscription(conn: asyncpg.Connection, *, subscription_id: int,
                           supporter_id: int) -> dict[str, Any] | None:
    """The supporter's subscription, or None (someone else's is as good as none)."""
    row = await conn.fetchrow(f"select {SUBSCRIPTION_COLUMNS} from subscriptions where id = $1 and supporter_id = $2",
                              subscription_id, supporter_id)
    return None if row is None else dict(row)


def check_term(months: int) -> int:
    if months not in TERMS:
        raise UserError("INVALID_TERM", "months is one of 1, 3, 6 or 12", "months")
    return months


async def subscribe(conn: asyncpg.Connection, *, tenant_id: int, supporter_id: int, thing_id: int, months: int,
                    period: date) -> int:
    check_term(months)
    owner = await conn.fetchrow(
        "select owner_id, owner_id is not distinct from $2 or merci_owns($2, canon) as own from things where id = $1",
        thing_id, supporter_id)
    if owner is None:
        raise UserError("UNKNOWN_THING", "no such thing", "thingId")
    if owner["own"]:
        raise UserError("OWN_THING", "you cannot subscribe to your own thing", "thingId")
    if await conn.fetchval(
        "select 1 from subscriptions where supporter_id = $1 and thing_id = $2 and status in ('active', 'paused')",
        supporter_id, thing_id,
    ):
        raise UserError("ALREADY_SUBSCRIBED", "you already subscribe to this thing", "thingId")
    sub_id: int = await conn.fetchval(
        "insert into subscriptions (tenant_id, supporter_id, thing_id, months, start_period)"
        " values ($1, $2, $3, $4, $5) returning id",
        tenant_id, supporter_id, thing_id, months, period,
    )
    return sub_id


async def transition(conn: asyncpg.Connection, *, supporter_id: int, subscription_id: int, action: str) -> str:
    allowed, target = TRANSITIONS[action]
    row = await conn.fetchrow(
        "select status from subscriptions where id = $1 and supporter_id = $2 for update",
        subscription_id, supporter_id,
    )
    if row is None:
        raise UserError("NOT_FOUND", "no such subscription", "id")
    if row["status"] not in allowed:
        raise UserError("INVALID_STATE", f"cannot {action} a subscription that is {row['status']}", "id")
    await conn.execute("update subscriptions set status = $1, updated_at = now() where id = $2",
                       target, subscription_id)
    return target


MATERIALIZE_SQL = """
with due as (
    select s.id, s.tenant_id, s.supporter_id, s.thing_id
      from subscriptions s
     where s.status = 'active' and s.start_period <= $1 and s.months_used < s.months
       and ($2::bigint is null or s.id = $2)
       and not exists (select 1 from subscription_periods p where p.subscription_id = s.id and p.period = $1)
       -- A thing that became one's own (claimed after subscribing) is not counted: the month
       -- is not used and no click is made (the close would drop it anyway).
       and not exists (select 1 from things t where t.id = s.thing_id
                          and (t.owner_id = s.supporter_id
                               or exists (select 1 from sites o where o.owner_id = s.supporter_id
                                             and o.verified_scope is not null
                                             and merci_covers(o.verified_scope, t.canon))))
     order by s.id
     for update of s
),
counted as (
    insert into subscription_periods (subscription_id, period, tenant_id)
    select id, $1, tenant_id from due on conflict do nothing
    returning subscription_id
),
used as (
    update subscriptions s
       set months_used = s.months_used + 1,
           status = case when s.months_used + 1 = s.months then 'completed' else s.status end,
           updated_at = now()
      from counted c where c.subscription_id = s.id
    returning s.id
),
clicked as (
    insert into clicks (tenant_id, supporter_id, thing_id, period, accepted_at, idempotency_key, source,
                        subscription_id)
    select d.tenant_id, d.supporter_id, d.thing_id, $1, $1::timestamp at time zone 'UTC',
           'sub:' || d.id || ':' || $1::text, 'subscription', d.id
      from due d join counted c on c.subscription_id = d.id
    on conflict do nothing
    returning thing_id, period
),
stats as (
    insert into thing_stats (thing_id, period, clicks)
    select thing_id, period, count(*) from clicked group by 1, 2 order by 1
    on conflict (thing_id, period) do update set clicks = thing_stats.clicks + excluded.clicks
    returning 1
)
-- (data-modifying CTEs run to completion whether or not they are read)
select (select count(*) from counted) as months, (select count(*) from clicked) as clicks
"""


async def materialize(conn: asyncpg.Connection, *, period: date, subscription_id: int | None = None) -> int:
    """Count `period` for every due subscription (or one); returns months counted. As merci_system."""
    async with conn.transaction():
        await conn.execute("select pg_advisory_xact_lock_shared($1, $2)", locks.MONTH, month_key(period))
        if await conn.fetchval("select 1 from month_closes where period = $1", period):
            return 0  # the month is closing or closed: its clicks are final
        row = await conn.fetchrow(MATERIALIZE_SQL, period, subscription_id)
    return int(row["months"])
