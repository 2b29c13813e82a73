"""Clicks ("flattrs"). The API validates cheaply and hands accepted clicks to the
`clicks` queue; workers ingest them in batches and apply the rules for good.

A click belongs to the month in which it was accepted. Ingestion is idempotent on
(supporter, idempotency key), so a redelivered message never counts twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import asyncpg

from merci.budgets import MIN_BUDGET
from merci.errors import UserError
from merci.urls import normalize_url

INGEST_ACTOR = "clicks.ingest"
CLICK_QUEUE = "clicks"
MAX_BATCH = 1000
# Ingestion holds this lock shared per month; starting a month's close takes it
# exclusively, so no click of that month can commit after the close has begun.
MONTH_LOCK_NS = 73_100_03


def period_of(at: datetime) -> date:
    at = at.astimezone(UTC)
    return date(at.year, at.month, 1)


def month_key(period: date) -> int:
    return period.year * 100 + period.month


def check_key(key: str) -> str:
    key = key.strip()
    if not 1 <= len(key) <= 200:
        raise UserError("INVALID_IDEMPOTENCY_KEY", "idempotencyKey has 1 to 200 characters", "idempotencyKey")
    return key


@dataclass(frozen=True)
class Accepted:
    """What goes on the queue: JSON primitives only."""

    supporter_id: int
    tenant_id: int
    thing_id: int | None
    url: str | None
    idempotency_key: str
    accepted_at: datetime
    source: str = "click"

    def message(self) -> list[Any]:
        return [self.supporter_id, self.tenant_id, self.thing_id, self.url, self.idempotency_key,
                self.accepted_at.isoformat(), self.source]


async def precheck(
    conn: asyncpg.Connection, *, supporter_id: int, tenant_id: int, thing_id: int | None, url: str | None,
    idempotency_key: str, currency: str, now: datetime,
) -> Accepted:
    """The API's cheap checks, in one round trip. The worker re-applies the rules."""
    key = check_key(idempotency_key)
    if (thing_id is None) == (url is None):
        raise UserError("INVALID_TARGET", "give either thingId or url", "thingId")
    if url is not None:
        url = normalize_url(url)
    period = period_of(now)
    row = await conn.fetchrow(
        """
        select (select coalesce(sum(e.amount), 0) from ledger_accounts la join entries e on e.ledger_account_id = la.id
                 where la.kind = 'supporter' and la.owner_account_id = $1 and la.currency = $5)::bigint as balance,
               t.id as thing_id, t.owner_id,
               exists (select 1 from clicks c where c.supporter_id = $1 and c.thing_id = t.id and c.period = $4)
                 as clicked,
               exists (select 1 from clicks c where c.supporter_id = $1 and c.idempotency_key = $6) as replayed
          from (select 1) as one
          left join things t on t.id = $2 or t.url = $3
        """,
        supporter_id, thing_id, url, period, currency, key,
    )
    if row["replayed"]:
        # The same request again: answer as before, count nothing new.
        return Accepted(supporter_id, tenant_id, row["thing_id"] or thing_id, url, key, now)
    if thing_id is not None and row["thing_id"] is None:
        raise UserError("UNKNOWN_THING", "no such thing", "thingId")
    if row["owner_id"] == supporter_id:
        raise UserError("OWN_THING", "you cannot click your own thing", "thingId" if thing_id else "url")
    if row["clicked"]:
        raise UserError("ALREADY_THIS_MONTH", "you already clicked this thing this month",
                        "thingId" if thing_id else "url")
    if row["balance"] < MIN_BUDGET:
        raise UserError("NO_MEANS", "top up your balance before clicking", None)
    return Accepted(supporter_id, tenant_id, row["thing_id"], None if row["thing_id"] else url, key, now)


class ClickBatcher:
    """Group commit for the API: concurrent requests share one queue message.

    A request is answered only once the message holding its click is in the
    broker, so "accepted" always means durable; under load, batches grow by
    themselves (whatever arrives while a send is in flight goes in the next).
    """

    def __init__(self, send: Callable[[list[list[Any]]], Awaitable[object]], max_batch: int = MAX_BATCH) -> None:
        self.send = send
        self.max_batch = max_batch
        self.pending: list[tuple[list[Any], asyncio.Future[None]]] = []
        self.flushing = False

    async def submit(self, click: Accepted) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((click.message(), future))
        if not self.flushing:
            self.flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        await future

    async def _flush(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch:]
                try:
                    await self.send([c for c, _ in batch])
                except Exception as exc:  # the broker is down: these clicks are not accepted
                    for _, f in batch:
                        if not f.done():
                            f.set_exception(exc)
                else:
                    for _, f in batch:
                        if not f.done():
                            f.set_result(None)
        finally:
            self.flushing = False


# ----------------------------------------------------------------- ingestion

INGEST_SQL = """
with input as (
    select * from unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::timestamptz[],
                         $7::text[])
        as x(supporter_id, tenant_id, thing_id, url, idempotency_key, accepted_at, source)
),
resolved as (
    select i.supporter_id, i.tenant_id, coalesce(i.thing_id, t.id) as thing_id, i.url, i.idempotency_key,
           i.accepted_at, i.source, date_trunc('month', i.accepted_at at time zone 'UTC')::date as period
      from input i left join things t on i.thing_id is null and t.url = i.url
),
valid as (
    select r.* from resolved r join things t on t.id = r.thing_id
     where t.owner_id is distinct from r.supporter_id
       and not exists (select 1 from month_closes m where m.period = r.period)
),
inserted as (
    insert into clicks (tenant_id, supporter_id, thing_id, period, accepted_at, idempotency_key, source)
    select tenant_id, supporter_id, thing_id, period, accepted_at, idempotency_key, source
      from valid order by accepted_at, supporter_id, thing_id
    on conflict do nothing
    returning supporter_id, thing_id, period, idempotency_key
),
stats as (
    insert into thing_stats (thing_id, period, clicks)
    select thing_id, period, count(*) from inserted group by thing_id, period order by thing_id, period
    on conflict (thing_id, period) do update set clicks = thing_stats.clicks + excluded.clicks
    returning 1
),
refused as (
    insert into click_rejections (supporter_id, idempotency_key, tenant_id, thing_id, url, period, reason)
    select r.supporter_id, r.idempotency_key, r.tenant_id, r.thing_id, r.url, r.period,
           case when r.thing_id is null then 'INVALID_URL'
                when t.owner_id = r.supporter_id then 'OWN_THING'
                when exists (select 1 from month_closes m where m.period = r.period) then 'MONTH_CLOSED'
                else 'ALREADY_THIS_MONTH' end
      from resolved r left join things t on t.id = r.thing_id
     where not exists (select 1 from inserted i where i.supporter_id = r.supporter_id
                                                 and i.idempotency_key = r.idempotency_key)
       -- a redelivered click is already stored under its key: not a refusal
       and not exists (select 1 from clicks c where c.supporter_id = r.supporter_id
                                              and c.idempotency_key = r.idempotency_key)
    on conflict do nothing
    returning 1
)
select (select count(*) from inserted) as inserted, (select count(*) from refused) as refused,
       (select count(*) from stats) as things
"""


async def ingest(conn: asyncpg.Connection, batch: list[list[Any]]) -> tuple[int, int]:
    """Store a batch of accepted clicks (as merci_system). Returns (stored, refused)."""
    if not batch:
        return 0, 0
    cols = list(zip(*batch, strict=True))
    accepted_at = [datetime.fromisoformat(a) for a in cols[5]]
    periods = sorted({month_key(period_of(a)) for a in accepted_at})
    async with conn.transaction():
        for key in periods:
            await conn.execute("select pg_advisory_xact_lock_shared($1, $2)", MONTH_LOCK_NS, key)
        # Auto-submit: an unknown URL becomes an unclaimed thing of the clicker's tenant.
        unknown = sorted({(u, t) for u, t, th in zip(cols[3], cols[1], cols[2], strict=True) if th is None and u})
        if unknown:
            await conn.execute(
                "insert into things (tenant_id, url) select distinct on (u) t, u"
                " from unnest($1::text[], $2::bigint[]) as x(u, t) order by u on conflict (url) do nothing",
                [u for u, _ in unknown], [t for _, t in unknown],
            )
        row = await conn.fetchrow(INGEST_SQL, list(cols[0]), list(cols[1]), list(cols[2]), list(cols[3]),
                                  list(cols[4]), accepted_at, list(cols[6]))
    return int(row["inserted"]), int(row["refused"])
