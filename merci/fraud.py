"""Click fraud: clicks that look bought or traded are flagged and held out of the close
until a platform admin reviews them (docs/fraud.md).

Rate limits (merci.ratelimit: click.account, click.ip) bound how fast anyone clicks;
what they cannot see is many accounts acting together. Detection reads a whole month
of clicks at once, set-based, and flags (table click_flags, with the reasons):

  ring           an account and another clicking each other's things (A -> B's thing and
                 B -> A's), or three in a circle (A -> B -> C -> A), one of them new;
  burst          a new account's clicks in any hour that holds `burst_clicks` or more of
                 them (clicks made while the account is new);
  shared_address `shared_address_accounts` or more accounts clicking one owner's things
                 (one unclaimed thing's, when it has no owner) from one client address
                 (clicks.client_hash; partner and subscription clicks carry none).

"New" is an account created within `fresh_days` before the month began, or during it
(for a burst: within `fresh_days` before the click).

A held click counts nothing (merci.split leaves it out): the supporter's budget is split
among their other clicks, and a supporter whose every click is held is not charged. A
release before the month's close begins counts the click again; a release after it does
not (`late`: the month was split without it and a closed month is never reopened; the
supporter's money of that month went to their other clicks, or stayed with them). A
rejection is final. The scheduler scans the open month every few minutes (`fraud.detect`),
and the worker's close scans the month once more at its start, under the month's lock,
after which no click of it can arrive.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg

from merci import locks
from merci.config import Settings
from merci.errors import UserError
from merci.paging import Keyset
from merci.periods import month_key

DETECT_ACTOR = "fraud.detect"
SCAN_EVERY = timedelta(minutes=10)
REASONS = ("ring", "burst", "shared_address")
DECISIONS = ("released", "rejected")


@dataclass(frozen=True)
class Rules:
    fresh_days: int = 14
    burst_clicks: int = 20
    burst_window: timedelta = timedelta(hours=1)
    shared_address_accounts: int = 5

    @classmethod
    def of(cls, settings: Settings) -> Rules:
        return cls(fresh_days=settings.fraud_fresh_days, burst_clicks=settings.fraud_burst_clicks,
                   shared_address_accounts=settings.fraud_shared_address_accounts)


# $1 period, $2 fresh days, $3 burst window, $4 burst clicks, $5 accounts behind one address.
FLAG_SQL = """
with month as materialized (
    select c.id, c.tenant_id, c.supporter_id, c.thing_id, c.accepted_at, c.source, c.client_hash, t.owner_id
      from clicks c join things t on t.id = c.thing_id
     where c.period = $1::date
),
fresh as materialized (
    select a.id, a.created_at from accounts a
     where a.created_at >= ($1::date::timestamp at time zone 'UTC') - make_interval(days => $2::int)
),
edges as materialized (
    select distinct m.supporter_id as s, m.owner_id as o from month m
     where m.owner_id is not null and m.owner_id <> m.supporter_id
),
ring_edges as (
    select e.s, e.o from edges e join edges back on back.s = e.o and back.o = e.s
     where e.s in (select id from fresh) or e.o in (select id from fresh)
    union
    -- Circles of three are looked for from their new member only: few accounts are new.
    select x.s, x.o from (
        select f1.s as f, f1.o as a, f2.o as b
          from edges f1 join edges f2 on f2.s = f1.o
         where f1.s in (select id from fresh) and f2.o <> f1.s
           and exists (select 1 from edges f3 where f3.s = f2.o and f3.o = f1.s)) circle
    cross join lateral (values (circle.f, circle.a), (circle.a, circle.b), (circle.b, circle.f)) as x(s, o)
),
young as materialized (
    -- clicks of accounts while they are new
    select m.id, m.supporter_id, m.accepted_at from month m join fresh f on f.id = m.supporter_id
     where m.accepted_at < f.created_at + make_interval(days => $2::int)
),
burst_starts as (
    select w.supporter_id, w.accepted_at from (
        select y.supporter_id, y.accepted_at,
               count(*) over (partition by y.supporter_id order by y.accepted_at
                              range between current row and $3::interval following) as n
          from young y) w
     where w.n >= $4::int
),
bursts as (
    -- every click within a window of the burst's length that holds too many
    select distinct y.id from young y
      join burst_starts b on b.supporter_id = y.supporter_id
                         and y.accepted_at between b.accepted_at and b.accepted_at + $3::interval
),
shared as (
    select m.id from month m
      join (select client_hash, coalesce(owner_id, -thing_id) as target from month
             where client_hash is not null and source = 'click'
             group by 1, 2 having count(distinct supporter_id) >= $5::int) g
        on g.client_hash = m.client_hash and g.target = coalesce(m.owner_id, -m.thing_id)
     where m.source = 'click'
),
flagged as (
    select f.id, array_agg(distinct f.reason order by f.reason) as reasons from (
        select m.id, 'ring' as reason from month m join ring_edges r on r.s = m.supporter_id and r.o = m.owner_id
        union all select id, 'burst' from bursts
        union all select id, 'shared_address' from shared) f
    group by f.id
),
written as (
    insert into click_flags as cf (click_id, tenant_id, period, supporter_id, thing_id, accepted_at, reasons)
    select m.id, m.tenant_id, $1::date, m.supporter_id, m.thing_id, m.accepted_at, f.reasons
      from flagged f join month m on m.id = f.id order by m.id
    -- A reviewed flag stays as reviewed (a released click is not held again); a held one
    -- gains the reasons found since.
    on conflict (click_id) do update
       set reasons = array(select distinct r from unnest(cf.reasons || excluded.reasons) r order by r)
     where cf.status = 'held' and not excluded.reasons <@ cf.reasons
    returning cf.reasons, (xmax = 0) as new
)
select count(*) filter (where new)::int as flagged,
       count(*) filter (where new and 'ring' = any(reasons))::int as ring,
       count(*) filter (where new and 'burst' = any(reasons))::int as burst,
       count(*) filter (where new and 'shared_address' = any(reasons))::int as shared_address
  from written
"""


async def flag(conn: asyncpg.Connection, *, period: date, rules: Rules) -> dict[str, int]:
    """Flag the month's suspicious clicks (as merci_system); returns the new flags, in all
    and by reason. The caller holds the month's lock (shared, or the close's exclusive)."""
    row = await conn.fetchrow(FLAG_SQL, period, rules.fresh_days, rules.burst_window, rules.burst_clicks,
                              rules.shared_address_accounts)
    return {k: int(v) for k, v in dict(row).items()}


async def detect(conn: asyncpg.Connection, *, period: date, rules: Rules) -> dict[str, int] | None:
    """The scheduled scan of a month still open; None when its close has begun (its
    clicks are split already: a flag now would change nothing)."""
    async with conn.transaction():
        # Shared, as ingestion: the close's start waits for this scan and vice versa.
        await conn.execute("select pg_advisory_xact_lock_shared($1, $2)", locks.MONTH, month_key(period))
        if await conn.fetchval("select 1 from month_closes where period = $1", period):
            return None
        found = await flag(conn, period=period, rules=rules)
        await conn.execute("insert into fraud_scans (period, scanned_at) values ($1, now())"
                           " on conflict (period) do update set scanned_at = excluded.scanned_at", period)
    return found


async def scan_due(conn: asyncpg.Connection, *, period: date, now: datetime) -> bool:
    """Whether the scheduler should scan `period` now: it has clicks and was not scanned
    within SCAN_EVERY."""
    return bool(await conn.fetchval(
        "select exists (select 1 from clicks where period = $1)"
        " and not exists (select 1 from fraud_scans where period = $1 and scanned_at > $2::timestamptz - $3::interval)",
        period, now, SCAN_EVERY))


# ----------------------------------------------------------------- review (platform admins)

FLAG_COLUMNS = ("click_id, tenant_id, period, supporter_id, thing_id, accepted_at, reasons, flagged_at, status,"
                " reviewed_by, reviewed_at, late")


def flagged(*, status: str | None) -> Keyset:
    """Flagged clicks, newest first, of one status or all. merci_app sees rows only as a
    platform admin (policy admins_read)."""
    return Keyset(f"select {FLAG_COLUMNS} from click_flags where ($1::text is null or status = $1::text)",
                  (status,), key="click_id")


async def flags_by_click(conn: asyncpg.Connection, click_ids: list[int]) -> dict[int, dict[str, Any]]:
    rows = await conn.fetch(f"select {FLAG_COLUMNS} from click_flags where click_id = any($1::bigint[])", click_ids)
    return {int(r["click_id"]): dict(r) for r in rows}


async def review(conn: asyncpg.Connection, *, click_id: int, decision: str) -> dict[str, Any]:
    """Release or reject a held click, as the transaction's principal (a platform admin);
    idempotent: the same decision again answers as before. Returns the flag's row."""
    if decision not in DECISIONS:
        raise UserError("INVALID_DECISION", "release or reject", "decision")
    try:
        async with conn.transaction():  # (a savepoint: a refusal leaves the caller's transaction usable)
            row = await conn.fetchrow("select * from merci_review_click($1, $2)", click_id, decision)
    except asyncpg.InsufficientPrivilegeError as exc:
        raise UserError("FORBIDDEN", "only a platform admin may review flagged clicks", None) from exc
    except asyncpg.NoDataFoundError as exc:
        raise UserError("NOT_FOUND", "no such flagged click", "clickId") from exc
    if row["status"] != decision:
        raise UserError("ALREADY_REVIEWED", f"this click was {row['status']} already", "clickId")
    return (await flags_by_click(conn, [click_id]))[click_id]
