"""The month close: exactly-once, set-based, sharded across workers.

start  : take the month's lock exclusively (in-flight click ingestion drains
         first; later clicks of the month are refused), count subscriptions, and
         record the close with its shard count.
shard  : a range of supporter ids (cut at start); one transaction computes the split
         (merci.split.SPLIT_SQL), posts one journal per supporter and marks the
         shard done. Journals are keyed close:<period>:<supporter>, the shard is
         advisory-locked, so a rerun, a crash half-way or two racing workers all
         end with the same ledger.
finish : once every shard is done, a self-check, then the close is 'done'.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import asyncpg

from merci import subscriptions
from merci.clicks import MONTH_LOCK_NS, month_key
from merci.split import SPLIT_SQL

SHARD_LOCK_NS = 73_100_04
DEFAULT_SHARDS = 16

CLOSE_ACTOR = "money.close_month"
SHARD_ACTOR = "money.close_shard"


class CloseError(Exception):
    pass


def parse_period(text: str) -> date:
    try:
        year, month = text.split("-")
        period = date(int(year), int(month), 1)
    except ValueError as exc:
        raise CloseError(f"{text!r} is not a month (YYYY-MM)") from exc
    if len(year) != 4 or len(month) != 2:
        raise CloseError(f"{text!r} is not a month (YYYY-MM)")
    return period


def next_period(p: date) -> date:
    return date(p.year + (p.month == 12), p.month % 12 + 1, 1)


async def start(
    conn: asyncpg.Connection, *, period: date, shards: int, currency: str, default_budget: int
) -> dict[str, Any]:
    """Begin (or rejoin) the close of `period`; returns its month_closes row."""
    existing = await conn.fetchrow("select * from month_closes where period = $1", period)
    if existing is not None:
        return dict(existing)
    previous = await conn.fetchrow(
        "select period, status from month_closes where period < $1 order by period desc limit 1", period)
    if previous is not None and previous["status"] != "done":
        raise CloseError(f"the close of {previous['period']:%Y-%m} is not done yet")
    # Subscriptions count in the month before it is frozen (idempotent).
    await subscriptions.materialize(conn, period=period)
    async with conn.transaction():
        # Exclusive: waits for ingestion transactions of this month to commit, and
        # from here on they see the month_closes row and refuse the month.
        await conn.execute("select pg_advisory_xact_lock($1, $2)", MONTH_LOCK_NS, month_key(period))
        # Shards are ranges of supporter ids with about as many supporters each, so
        # every shard reads its clicks by index range (period, supporter_id).
        bounds = await conn.fetchval(
            "select coalesce(array_agg(lo order by lo), array[0]::bigint[]) from ("
            "  select min(supporter_id) as lo from ("
            "    select supporter_id, ntile($2) over (order by supporter_id) as tile"
            "      from (select distinct supporter_id from clicks where period = $1) d) t"
            "  group by tile) b", period, shards)
        bounds[0] = 0  # the first shard starts at the bottom: nothing can fall outside
        await conn.execute(
            "insert into month_closes (period, shards, bounds, currency, default_budget)"
            " values ($1, $2, $3, $4, $5) on conflict (period) do nothing",
            period, len(bounds), bounds, currency, default_budget,
        )
    return dict(await conn.fetchrow("select * from month_closes where period = $1", period))


SHARES_TABLE = """
create temp table close_split (
    supporter_id bigint, supporter_tenant bigint, supporter_account bigint, n int, charge bigint, fee bigint,
    partner bigint,
    thing_id bigint, owner_id bigint, thing_tenant bigint, rank int, amount bigint
) on commit drop
"""

ACCOUNTS_SQL = """
insert into ledger_accounts (kind, tenant_id, currency, owner_account_id, thing_id)
select kind, tenant_id, $1::text, owner_account_id, thing_id from (
    select distinct 'creator' as kind, thing_tenant as tenant_id, owner_id as owner_account_id, null::bigint as thing_id
      from close_split where owner_id is not null
    union select distinct 'escrow', thing_tenant, null::bigint, thing_id from close_split where owner_id is null
    union select distinct 'partner_share', supporter_tenant, null::bigint, null::bigint
      from close_split where partner > 0
    union select 'platform_fee', $2::bigint, null::bigint, null::bigint
) a
order by kind, tenant_id, owner_account_id, thing_id
on conflict do nothing
"""

POST_SQL = """
with sup as (
    select distinct supporter_id, supporter_tenant, supporter_account, charge, fee, partner from close_split
),
j as (
    insert into journals (tenant_id, kind, idem_key, period, memo)
    select supporter_tenant, 'month_close', 'close:' || $1::date::text || ':' || supporter_id, $1::date, 'month close'
      from sup order by supporter_id
    on conflict (idem_key) do nothing
    returning id, idem_key, tenant_id
),
js as (
    select j.id as journal_id, split_part(j.idem_key, ':', 3)::bigint as supporter_id, j.tenant_id as journal_tenant
      from j
),
fee_account as (
    select id, tenant_id from ledger_accounts
     where kind = 'platform_fee' and tenant_id = $2::bigint and currency = $3::text
       and owner_account_id is null and thing_id is null
),
lines as (
    -- the supporter's balance account: found by the split (a charge needs a balance)
    select js.journal_id, js.journal_tenant, sup.supporter_account as account, sup.supporter_tenant as tenant_id,
           -sup.charge as amount, null::bigint as thing_id
      from sup join js using (supporter_id)
    union all
    select js.journal_id, js.journal_tenant, fa.id, fa.tenant_id, sup.fee - sup.partner, null
      from sup join js using (supporter_id) cross join fee_account fa
     where sup.fee - sup.partner > 0
    union all
    select js.journal_id, js.journal_tenant, la.id, la.tenant_id, sup.partner, null
      from sup join js using (supporter_id)
      join ledger_accounts la on la.kind = 'partner_share' and la.tenant_id = sup.supporter_tenant
                             and la.currency = $3 and la.owner_account_id is null and la.thing_id is null
     where sup.partner > 0
    union all
    select js.journal_id, js.journal_tenant, la.id, la.tenant_id, s.amount, s.thing_id
      from close_split s join js using (supporter_id)
      join ledger_accounts la on la.kind = 'creator' and la.tenant_id = s.thing_tenant
                             and la.owner_account_id = s.owner_id and la.currency = $3 and la.thing_id is null
     where s.owner_id is not null and s.amount > 0
    union all
    select js.journal_id, js.journal_tenant, la.id, la.tenant_id, s.amount, s.thing_id
      from close_split s join js using (supporter_id)
      join ledger_accounts la on la.kind = 'escrow' and la.tenant_id = s.thing_tenant
                             and la.thing_id = s.thing_id and la.currency = $3 and la.owner_account_id is null
     where s.owner_id is null and s.amount > 0
)
insert into entries (journal_id, ledger_account_id, tenant_id, amount, currency, thing_id, journal_tenant_id)
select journal_id, account, tenant_id, amount, $3, thing_id, journal_tenant from lines
"""


async def close_shard(conn: asyncpg.Connection, *, period: date, shard: int) -> dict[str, int] | None:
    """Close one shard; None if it was already closed (by this or another worker)."""
    async with conn.transaction():
        close = await conn.fetchrow("select * from month_closes where period = $1", period)
        if close is None:
            raise CloseError(f"the close of {period:%Y-%m} was not started")
        if not 0 <= shard < close["shards"]:
            raise CloseError(f"no shard {shard} in the close of {period:%Y-%m}")
        await conn.execute("select pg_advisory_xact_lock($1, $2)", SHARD_LOCK_NS, month_key(period) * 4096 + shard)
        if await conn.fetchval("select 1 from month_close_shards where period = $1 and shard = $2", period, shard):
            return None
        platform = await conn.fetchval("select id from tenants where is_platform order by id limit 1")
        currency = close["currency"]
        await conn.execute(SHARES_TABLE)
        bounds = close["bounds"]
        upper = bounds[shard + 1] if shard + 1 < len(bounds) else None
        await conn.execute("insert into close_split " + SPLIT_SQL, period, close["default_budget"], currency,
                           None, bounds[shard], upper)
        await conn.execute("analyze close_split")
        await conn.execute(ACCOUNTS_SQL, currency, platform)
        await conn.execute(POST_SQL, period, platform, currency)
        stats = await conn.fetchrow(
            "select count(distinct supporter_id)::int as supporters, count(*)::bigint as clicks,"
            " coalesce(sum(amount) + sum(fee) filter (where rank = 1), 0)::bigint as charged from close_split")
        await conn.execute(
            "insert into month_close_shards (period, shard, supporters, clicks, charged) values ($1, $2, $3, $4, $5)",
            period, shard, stats["supporters"], stats["clicks"], stats["charged"],
        )
    return dict(stats)


async def progress(conn: asyncpg.Connection, period: date) -> tuple[int, int, str | None]:
    row = await conn.fetchrow(
        "select m.shards, m.status, (select count(*) from month_close_shards s where s.period = m.period) as done"
        " from month_closes m where m.period = $1", period)
    if row is None:
        return 0, 0, None
    return int(row["done"]), int(row["shards"]), str(row["status"])


async def finish(conn: asyncpg.Connection, *, period: date) -> str:
    """Self-check and mark done once every shard is; idempotent. Returns the status."""
    async with conn.transaction():
        close = await conn.fetchrow("select * from month_closes where period = $1 for update", period)
        if close is None:
            raise CloseError(f"the close of {period:%Y-%m} was not started")
        if close["status"] != "running":
            return str(close["status"])
        done = await conn.fetchval("select count(*) from month_close_shards where period = $1", period)
        if done < close["shards"]:
            return "running"
        check = await conn.fetchrow(
            """
            select (select coalesce(sum(supporters), 0) from month_close_shards where period = $1) as supporters,
                   (select coalesce(sum(charged), 0) from month_close_shards where period = $1) as charged,
                   count(distinct j.id) as journals,
                   coalesce(-sum(e.amount) filter (where la.kind = 'supporter'), 0) as debited,
                   coalesce(sum(e.amount) filter (where la.kind in ('creator', 'escrow')), 0) as shares,
                   coalesce(sum(e.amount) filter (where la.kind = 'platform_fee'), 0) as fees,
                   coalesce(sum(e.amount) filter (where la.kind = 'partner_share'), 0) as partner,
                   coalesce(sum(e.amount), 0) as imbalance
              from journals j join entries e on e.journal_id = j.id
              join ledger_accounts la on la.id = e.ledger_account_id
             where j.kind = 'month_close' and j.period = $1
            """, period)
        problems = []
        if check["imbalance"] != 0:
            problems.append(f"close journals sum to {check['imbalance']}, not 0")
        if check["debited"] != check["shares"] + check["fees"] + check["partner"]:
            problems.append("charged budgets differ from shares + fees")
        if check["debited"] != check["charged"]:
            problems.append(f"debited {check['debited']} but shards charged {check['charged']}")
        summary = {k: int(v) for k, v in dict(check).items()}
        if problems:
            await conn.execute("update month_closes set status = 'failed', error = $2, summary = $3::text::jsonb,"
                               " finished_at = now() where period = $1", period, "; ".join(problems),
                               json.dumps(summary))
            return "failed"
        # As text: the same on pooled connections (with a jsonb codec) and bare ones.
        await conn.execute("update month_closes set status = 'done', summary = $2::text::jsonb, finished_at = now()"
                           " where period = $1", period, json.dumps(summary))
    return "done"


async def close_inline(conn: asyncpg.Connection, *, period: date, shards: int = DEFAULT_SHARDS,
                       currency: str = "EUR", default_budget: int = 500) -> str:
    """The whole close in this process (tests, benchmarks, `--inline`)."""
    close = await start(conn, period=period, shards=shards, currency=currency, default_budget=default_budget)
    for shard in range(close["shards"]):
        await close_shard(conn, period=period, shard=shard)
    return await finish(conn, period=period)
