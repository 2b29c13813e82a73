"""The rule of the month: how one supporter's budget is split among what they clicked.

SPLIT_SQL is the one place the rule lives. The month close runs it set-based over a
shard of supporters; the dashboard's projected split runs it for one supporter.

Per supporter with N > 0 clicks in the month and budget B (capped by balance; the budget
last set before the month ends, at midnight UTC: months are UTC months, as clicks' are):
  fee     = floor(B * fee_bps / 10000)               (the supporter's tenant's rate)
  partner = floor(fee * partner_share_bps / 10000)   (0 for the platform tenant)
  D       = B - fee; each click gets floor(D / N), and the D mod N remaining cents
            go one each to the clicks accepted first (ties: lower thing id).
A supporter with no click is not charged. A click held for review (merci.fraud: flagged,
and not released before the close began) is not one of the N: the budget is split among
the supporter's other clicks, and a supporter whose every click is held is not charged.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import asyncpg

from merci.budgets import month_budget_sql
from merci.ledger import owner_balance_sql

# $1 period, $2 default budget, $3 currency, $4 supporter ids (null: all),
# $5, $6: the supporter id range [from, to) of a shard (null `to`: no upper bound).
SPLIT_SQL = f"""
with own_scopes as materialized (
    -- The verified scopes of these supporters: few (most supporters create nothing), so
    -- the clicks below are checked against them by a hash, not a lookup per click.
    select s.owner_id, s.verified_scope from sites s
     where s.verified_scope is not null
       and ($4::bigint[] is null or s.owner_id = any($4::bigint[]))
       and s.owner_id >= $5::bigint and ($6::bigint is null or s.owner_id < $6::bigint)
),
c as (
    select c.supporter_id, c.thing_id, t.owner_id, t.tenant_id as thing_tenant,
           (row_number() over w)::int as rank, (count(*) over w)::int as n
      from clicks c
      join things t on t.id = c.thing_id
     where c.period = $1::date
       and ($4::bigint[] is null or c.supporter_id = any($4::bigint[]))
       and c.supporter_id >= $5::bigint and ($6::bigint is null or c.supporter_id < $6::bigint)
       -- Never a share of one's own thing (by verified scope, whoever holds it now): the
       -- click is dropped and the split is over the rest.
       and t.owner_id is distinct from c.supporter_id
       -- Held for review (merci.fraud): the split is over the rest. Flags are few, so this
       -- is one hash of them, probed per click.
       and c.id not in (select f.click_id from click_flags f where f.period = $1::date and f.holds)
       -- (most supporters have no verified site: one hash probe tells, whatever the plan)
       and (c.supporter_id not in (select o.owner_id from own_scopes o)
            or not exists (select 1 from own_scopes o
                            where o.owner_id = c.supporter_id and merci_covers(o.verified_scope, t.canon)))
    -- One window for both (one pass): the frame is the whole supporter's month, so
    -- count(*) is N; row_number() ignores frames.
    window w as (partition by c.supporter_id order by c.accepted_at, c.thing_id
                 rows between unbounded preceding and unbounded following)
),
s as materialized (
    select c.supporter_id, c.n, (select a.tenant_id from accounts a where a.id = c.supporter_id) as tenant_id
      from c where c.rank = 1
),
-- Each supporter's tenant, budget and balance are looked up by index, one supporter at
-- a time: a shard's few thousand supporters are a sliver of those tables, and lookups
-- need no row estimates (a misestimated join here once cost minutes, not milliseconds).
-- Materialized, so that each is looked up once per supporter, not once per click.
charged as materialized (
    select s.supporter_id, s.n, s.tenant_id, t.fee_bps, t.partner_share_bps, t.is_platform,
           balance.ledger_account,
           least(coalesce(budget.amount, $2::bigint), greatest(balance.balance, 0)) as charge
      from s
      join tenants t on t.id = s.tenant_id
      -- The month's budget: the last set before the month's end, midnight UTC.
      left join lateral ({month_budget_sql(account='s.supporter_id', period='$1::date')}) budget on true
      left join lateral ({owner_balance_sql(owner='s.supporter_id', currency='$3::text', with_account=True)}) balance
        on true
),
fees as (
    select ch.*, ch.charge * ch.fee_bps / 10000 as fee from charged ch where ch.charge > 0
)
select f.supporter_id, f.tenant_id as supporter_tenant, f.ledger_account as supporter_account, f.n, f.charge,
       f.fee,
       case when f.is_platform then 0 else f.fee * f.partner_share_bps / 10000 end::bigint as partner,
       c.thing_id, c.owner_id, c.thing_tenant, c.rank,
       ((f.charge - f.fee) / f.n + case when c.rank <= (f.charge - f.fee) % f.n then 1 else 0 end)::bigint as amount
  from fees f
  join c on c.supporter_id = f.supporter_id
"""


async def projected(
    conn: asyncpg.Connection, *, period: date, supporter_id: int, default_budget: int, currency: str
) -> list[dict[str, Any]]:
    """The split the close would post for one supporter, were the month to close now."""
    rows = await conn.fetch(SPLIT_SQL + " order by c.rank", period, default_budget, currency,
                            [supporter_id], supporter_id, None)
    return [dict(r) for r in rows]
