"""The month close: exactly-once, set-based, sharded across workers.

start  : take the month's lock exclusively (in-flight click ingestion drains
         first; later clicks of the month are refused), count subscriptions, screen
         the month's clicks for fraud once more when asked (merci.fraud: flagged
         clicks are held out of the split; under this lock no click, flag or review
         of the month can change what the shards will read), make the ledger accounts
         the month will credit, and record the close with its shard count.
shard  : a range of supporter ids (cut at start); one transaction computes the split
         (merci.split.SPLIT_SQL), posts one journal per supporter and marks the
         shard done. Journals are keyed close:<period>:<supporter>, the shard is
         advisory-locked, so a rerun, a crash half-way or two racing workers all
         end with the same ledger.
         Before it counts as done, the shard checks what it wrote (every journal
         balances; debited = shares + fees = what the split charged; one journal
         per charged supporter) and records those figures with its done-marker.
finish : once every shard is done, a self-check over the shards' figures, then the
         close is 'done'.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import asyncpg

from merci import fraud, locks, subscriptions
from merci.periods import month_key, sql_period_of
from merci.split import SPLIT_SQL

DEFAULT_SHARDS = 16

CLOSE_ACTOR = "money.close_month"
SHARD_ACTOR = "money.close_shard"


class CloseError(Exception):
    pass


class ClicksQueued(CloseError):
    """Clicks of the month were accepted (answered PENDING) and are not stored yet: the
    close waits for the workers to store them, rather than freeze the month under them
    (the workers would refuse them MONTH_CLOSED after the client was told PENDING)."""


# Accepted clicks of `$1`'s month not yet stored: in the outbox (Redis or RabbitMQ as the
# broker: a row until its clicks are stored, merci.click_outbox) or in the PostgreSQL
# broker's queue, queued or held by a worker (`consumed`: prefetched, being ingested, or
# a dead worker's until the heartbeat returns it; counting only `queued` let a close start
# under a worker's prefetched batch, which it then refused MONTH_CLOSED). The writes of
# both take the month's lock and look for its close (migration 0030). Each batch item is
# [supporter, tenant, thing, url, key, accepted_at, ...].
QUEUED_CLICKS_SQL = f"""
select count(*) from (
    select batch from click_outbox
    union all
    select message->'args'->0 from dramatiq.queue where queue_name = 'clicks' and state in ('queued', 'consumed')
) b, jsonb_array_elements(case when jsonb_typeof(b.batch) = 'array' then b.batch else '[]' end) c
where {sql_period_of("(c->>5)::timestamptz")} = $1
"""


# The ledger accounts the month's close will credit, made once at its start. A shard
# makes those it misses itself (a thing claimed since, say), but shards running at once
# would otherwise each insert the same new accounts and wait for one another's commit.
# (An account may go unused if a supporter cannot pay: it is created empty, no more.)
MONTH_ACCOUNTS_SQL = """
insert into ledger_accounts (kind, tenant_id, currency, owner_account_id, thing_id)
select kind, tenant_id, $2::text, owner_account_id, thing_id from (
    select case when t.owner_id is null then 'escrow' else 'creator' end as kind, t.tenant_id,
           t.owner_id as owner_account_id, case when t.owner_id is null then t.id end as thing_id
      from things t where t.id in (select c.thing_id from clicks c where c.period = $1::date)
    union
    select 'partner_share', tn.id, null::bigint, null::bigint from tenants tn
     where tn.partner_share_bps > 0 and not tn.is_platform
       and exists (select 1 from clicks c join accounts a on a.id = c.supporter_id
                    where c.period = $1::date and a.tenant_id = tn.id)
    union select 'platform_fee', $3::bigint, null::bigint, null::bigint
) a
order by kind, tenant_id, owner_account_id, thing_id
on conflict do nothing
"""


async def _platform_tenant(conn: asyncpg.Connection) -> int:
    """The platform's own tenant: the account of its fees."""
    found: int = await conn.fetchval("select id from tenants where is_platform order by id limit 1")
    return found


async def start(
    conn: asyncpg.Connection, *, period: date, shards: int, currency: str, default_budget: int,
    screen: fraud.Rules | None = None,
) -> dict[str, Any]:
    """Begin (or rejoin) the close of `period`; returns its month_closes row. With
    `screen`, the month's clicks are scanned for fraud before it is frozen."""
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
        await conn.execute("select pg_advisory_xact_lock($1, $2)", locks.MONTH, month_key(period))
        # (A second start waiting here finds the close recorded: on conflict below.)
        # Clicks accepted for the month and still queued are stored first (the caller
        # retries: the worker's actor by Dramatiq's backoff, `merci close-month` when re-run).
        if not await conn.fetchval("select 1 from month_closes where period = $1", period):
            queued = await conn.fetchval(QUEUED_CLICKS_SQL, period)
            if queued:
                raise ClicksQueued(f"{queued} accepted clicks of {period:%Y-%m} are not stored yet: the close"
                                   " starts once the workers have stored them (are they running? re-run to resume)")
        if screen is not None and not await conn.fetchval("select 1 from month_closes where period = $1", period):
            await fraud.flag(conn, period=period, rules=screen)
        # Shards are ranges of supporter ids with about as many supporters each, so
        # every shard reads its clicks by index range (period, supporter_id).
        bounds = await conn.fetchval(
            "select coalesce(array_agg(lo order by lo), array[0]::bigint[]) from ("
            "  select min(supporter_id) as lo from ("
            "    select supporter_id, ntile($2) over (order by supporter_id) as tile"
            "      from (select distinct supporter_id from clicks where period = $1) d) t"
            "  group by tile) b", period, shards)
        bounds[0] = 0  # the first shard starts at the bottom: nothing can fall outside
        platform = await _platform_tenant(conn)
        await conn.execute(MONTH_ACCOUNTS_SQL, period, currency, platform)
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

# Per transaction (SET LOCAL), so pooled connections keep their defaults.
SHARD_SETTINGS = """
set local work_mem = '64MB';
set local plan_cache_mode = force_custom_plan;
set local jit = off;
set local enable_mergejoin = off
"""
# work_mem: a shard's clicks are sorted and its supporters hashed in memory, not on disk.
# plan_cache_mode: the statements are prepared once per pooled connection; a generic plan
#   would not know the shard's id range and could read the whole month's clicks.
# jit: compiling costs more than it saves on statements of a few tens of thousands of rows.
# enable_mergejoin: close_split has no statistics (see below), and on its guesses the
#   posting joined the shares to their accounts by sorting both (a tenth of the posting's
#   time) where hashing the shard's few thousand accounts is cheaper.

# Each clicked thing's creator or escrow account, looked up by its key once per thing
# (not once per click; and not joined: a join here is planned on guesses, and a wrong
# guess once turned milliseconds into minutes). Null: the account is still missing.
THING_ACCOUNT = """
case when t.owner_id is null
     then (select la.id from ledger_accounts la
            where la.kind = 'escrow' and la.tenant_id = t.thing_tenant and la.owner_account_id is null
              and la.thing_id = t.thing_id and la.currency = $1::text)
     else (select la.id from ledger_accounts la
            where la.kind = 'creator' and la.tenant_id = t.thing_tenant and la.owner_account_id = t.owner_id
              and la.thing_id is null and la.currency = $1::text)
end"""

THING_ACCOUNTS_TABLE = f"""
create temp table close_account on commit drop as
select t.thing_id, t.thing_tenant, t.owner_id, {THING_ACCOUNT} as id
  from (select distinct thing_id, thing_tenant, owner_id from close_split) t
"""

# The accounts still missing: made at start for the things and owners of that moment,
# so normally none (a thing claimed since, a tenant's partner share switched on...).
ACCOUNTS_SQL = """
insert into ledger_accounts (kind, tenant_id, currency, owner_account_id, thing_id)
select kind, tenant_id, $1::text, owner_account_id, thing_id from (
    select case when owner_id is null then 'escrow' else 'creator' end as kind, thing_tenant as tenant_id,
           owner_id as owner_account_id, case when owner_id is null then thing_id end as thing_id
      from close_account where id is null
    union select 'partner_share', supporter_tenant, null::bigint, null::bigint from close_split
           where rank = 1 and partner > 0
    union select 'platform_fee', $2::bigint, null::bigint, null::bigint
) a
order by kind, tenant_id, owner_account_id, thing_id
on conflict do nothing
"""

FILL_ACCOUNTS_SQL = f"update close_account t set id = {THING_ACCOUNT} where t.id is null"

# One statement writes the shard's journals and entries and reads back what it wrote
# (RETURNING), so the self-check costs no second pass over the ledger.
POST_SQL = """
with sup as (
    select supporter_id, supporter_tenant, supporter_account, n, charge, fee, partner from close_split where rank = 1
),
j as (
    insert into journals (tenant_id, kind, idem_key, period, memo)
    select supporter_tenant, 'month_close', 'close:' || $1::date::text || ':' || supporter_id, $1::date, 'month close'
      from sup order by supporter_id
    on conflict (idem_key) do nothing
    returning id, tenant_id, split_part(idem_key, ':', 3)::bigint as supporter_id
),
posted as (
    -- A supporter whose journal already existed posts nothing here: the check then finds
    -- debited < charged and the shard fails instead of charging twice.
    select j.id as journal_id, j.tenant_id as journal_tenant, sup.*
      from j join sup using (supporter_id)
),
fee_account as (
    select id, tenant_id from ledger_accounts
     where kind = 'platform_fee' and tenant_id = $2::bigint and currency = $3::text
       and owner_account_id is null and thing_id is null
),
lines as (
    -- the supporter's balance account: found by the split (a charge needs a balance)
    select p.journal_id, p.journal_tenant, p.supporter_account as account, p.supporter_tenant as tenant_id,
           -p.charge as amount, null::bigint as thing_id
      from posted p
    union all
    select p.journal_id, p.journal_tenant, fa.id, fa.tenant_id, p.fee - p.partner, null
      from posted p cross join fee_account fa
     where p.fee - p.partner > 0
    union all
    select p.journal_id, p.journal_tenant,
           (select la.id from ledger_accounts la
             where la.kind = 'partner_share' and la.tenant_id = p.supporter_tenant and la.owner_account_id is null
               and la.thing_id is null and la.currency = $3),
           p.supporter_tenant, p.partner, null
      from posted p
     where p.partner > 0
    union all
    select p.journal_id, p.journal_tenant, sa.id, sa.thing_tenant, s.amount, s.thing_id
      from close_split s join posted p using (supporter_id) join close_account sa using (thing_id)
     where s.amount > 0
),
written as (
    insert into entries (journal_id, ledger_account_id, tenant_id, amount, currency, thing_id, journal_tenant_id)
    -- (select ...): the currency is cast to its domain (a regex check) once, not once per entry.
    -- In journal order, each entry's journal_id goes to the end of its index, the cheap place.
    select journal_id, account, tenant_id, amount, (select $3::merci_currency), thing_id, journal_tenant
      from lines order by journal_id
    returning ledger_account_id, amount, thing_id
)
-- What was written, read back: the shard's debits (its only negative entries), the
-- shares (entries naming a thing), the platform's fees and the partners' shares of them.
select (select count(*) from sup)::int as supporters,
       (select coalesce(sum(n), 0) from sup)::bigint as clicks,
       (select coalesce(sum(charge), 0) from sup)::bigint as charged,
       (select count(*) from j)::bigint as journals,
       coalesce(-sum(amount) filter (where amount < 0), 0)::bigint as debited,
       coalesce(sum(amount) filter (where amount > 0 and thing_id is not null), 0)::bigint as shares,
       coalesce(sum(amount) filter (where amount > 0 and thing_id is null
                                      and ledger_account_id in (select id from fee_account)), 0)::bigint as fees,
       coalesce(sum(amount) filter (where amount > 0 and thing_id is null
                                      and ledger_account_id not in (select id from fee_account)), 0)::bigint as partner,
       coalesce(sum(amount), 0)::bigint as imbalance
  from written
"""

# The figures a shard checks and records; finish sums them.
FIGURES = ("supporters", "clicks", "charged", "journals", "debited", "shares", "fees", "partner", "imbalance")


def problems_in(figures: dict[str, int]) -> list[str]:
    """What is wrong with a close's (or a shard's) figures: nothing, for a sound close."""
    problems = []
    if figures["imbalance"] != 0:
        problems.append(f"close journals sum to {figures['imbalance']}, not 0")
    if figures["debited"] != figures["shares"] + figures["fees"] + figures["partner"]:
        problems.append("charged budgets differ from shares + fees")
    if figures["debited"] != figures["charged"]:
        problems.append(f"debited {figures['debited']} but the split charged {figures['charged']}")
    if figures["journals"] != figures["supporters"]:
        problems.append(f"{figures['journals']} journals for {figures['supporters']} charged supporters")
    return problems


class ShardCheckFailed(CloseError):
    pass


async def close_shard(conn: asyncpg.Connection, *, period: date, shard: int) -> dict[str, int] | None:
    """Close one shard; None if it was already closed (by this or another worker), or
    if it failed its self-check.

    The shard checks itself before it counts as done, in its own transaction: the
    entries it wrote balance and add up to what the split charged. A shard that fails
    posts nothing and marks the close failed (`merci audit` reports failed closes)."""
    try:
        return await _close_shard(conn, period=period, shard=shard)
    except ShardCheckFailed as exc:
        async with conn.transaction():
            await conn.execute("update month_closes set status = 'failed', error = $2, finished_at = now()"
                               " where period = $1 and status = 'running'", period, str(exc))
        return None


async def _close_shard(conn: asyncpg.Connection, *, period: date, shard: int) -> dict[str, int] | None:
    async with conn.transaction():
        close = await conn.fetchrow("select * from month_closes where period = $1", period)
        if close is None:
            raise CloseError(f"the close of {period:%Y-%m} was not started")
        if not 0 <= shard < close["shards"]:
            raise CloseError(f"no shard {shard} in the close of {period:%Y-%m}")
        await conn.execute("select pg_advisory_xact_lock($1, $2)", locks.CLOSE_SHARD, month_key(period) * 4096 + shard)
        if await conn.fetchval("select 1 from month_close_shards where period = $1 and shard = $2", period, shard):
            return None
        # Shared with other shards, exclusive with claims: no thing changes owner between
        # the split's reading of it and this transaction's commit (an escrow posted for a
        # thing claimed meanwhile would strand there). Taken before the split's statement,
        # so the split's snapshot sees every claim committed before it.
        await conn.execute("select pg_advisory_xact_lock_shared($1, $2)", *locks.OWNERSHIP)
        await conn.execute(SHARD_SETTINGS)
        platform = await _platform_tenant(conn)
        currency = close["currency"]
        await conn.execute(SHARES_TABLE)
        bounds = close["bounds"]
        upper = bounds[shard + 1] if shard + 1 < len(bounds) else None
        # No ANALYZE of close_split: the plans below are the same without it, and it cost
        # as much as writing the shard's journals.
        await conn.execute("insert into close_split " + SPLIT_SQL, period, close["default_budget"], currency,
                           None, bounds[shard], upper)
        await conn.execute(THING_ACCOUNTS_TABLE, currency)
        await conn.execute(ACCOUNTS_SQL, currency, platform)
        await conn.execute(FILL_ACCOUNTS_SQL, currency)
        figures = {k: int(v) for k, v in dict(await conn.fetchrow(POST_SQL, period, platform, currency)).items()}
        problems = problems_in(figures)
        if problems:
            raise ShardCheckFailed(f"shard {shard}: " + "; ".join(problems))
        await conn.execute(
            "insert into month_close_shards (period, shard, supporters, clicks, charged, journals, debited, shares,"
            " fees, partner) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            period, shard, *(figures[k] for k in FIGURES if k != "imbalance"),  # 0, checked above
        )
    return figures


async def progress(conn: asyncpg.Connection, period: date) -> tuple[int, int, str | None]:
    row = await conn.fetchrow(
        "select m.shards, m.status, (select count(*) from month_close_shards s where s.period = m.period) as done"
        " from month_closes m where m.period = $1", period)
    if row is None:
        return 0, 0, None
    return int(row["done"]), int(row["shards"]), str(row["status"])


SHARD_TOTALS_SQL = """
select count(*) as done, count(*) filter (where debited is null) as unchecked,
       coalesce(sum(supporters), 0)::bigint as supporters, coalesce(sum(clicks), 0)::bigint as clicks,
       coalesce(sum(charged), 0)::bigint as charged, coalesce(sum(journals), 0)::bigint as journals,
       coalesce(sum(debited), 0)::bigint as debited, coalesce(sum(shares), 0)::bigint as shares,
       coalesce(sum(fees), 0)::bigint as fees, coalesce(sum(partner), 0)::bigint as partner, 0::bigint as imbalance
  from month_close_shards where period = $1
"""

# A scan of the month's whole close, for shards closed before they checked themselves
# (a close started by an older version and resumed by this one).
LEDGER_TOTALS_SQL = """
select count(distinct j.id) as journals,
       coalesce(-sum(e.amount) filter (where la.kind = 'supporter'), 0) as debited,
       coalesce(sum(e.amount) filter (where la.kind in ('creator', 'escrow')), 0) as shares,
       coalesce(sum(e.amount) filter (where la.kind = 'platform_fee'), 0) as fees,
       coalesce(sum(e.amount) filter (where la.kind = 'partner_share'), 0) as partner,
       coalesce(sum(e.amount), 0) as imbalance
  from journals j join entries e on e.journal_id = j.id
  join ledger_accounts la on la.id = e.ledger_account_id
 where j.kind = 'month_close' and j.period = $1
"""


async def finish(conn: asyncpg.Connection, *, period: date) -> str:
    """Mark the close done once every shard is; idempotent. Returns the status.

    Each shard checked its own entries when it was posted (and nothing can change them
    since: the ledger is append-only), so the self-check here adds up the shards'
    figures instead of scanning the month's ledger again."""
    async with conn.transaction():
        close = await conn.fetchrow("select * from month_closes where period = $1 for update", period)
        if close is None:
            raise CloseError(f"the close of {period:%Y-%m} was not started")
        if close["status"] != "running":
            return str(close["status"])
        totals = dict(await conn.fetchrow(SHARD_TOTALS_SQL, period))
        if totals.pop("done") < close["shards"]:
            return "running"
        if totals.pop("unchecked"):
            totals.update(await conn.fetchrow(LEDGER_TOTALS_SQL, period))
        summary = {k: int(totals[k]) for k in FIGURES if k != "clicks"}
        problems = problems_in(summary)
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
