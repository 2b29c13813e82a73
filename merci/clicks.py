"""Clicks ("flattrs"). The API validates cheaply and hands accepted clicks to the
`clicks` queue; workers ingest them in batches and apply the rules for good.

A click belongs to the month in which it was accepted. Ingestion is idempotent on
(supporter, idempotency key), so a redelivered message never counts twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Generic, TypeVar

import asyncpg
import orjson
import structlog

from merci import click_outbox, locks
from merci.budgets import MIN_BUDGET
from merci.errors import Checks, UserError
from merci.ledger import supporter_balances_sql
from merci.outage_log import OutageLog
from merci.paging import Keyset
from merci.periods import month_key, period_of, sql_period_of
from merci.queue import CLICKS
from merci.urls import normalize_url

log = structlog.get_logger(__name__)

INGEST_ACTOR = "clicks.ingest"
CLICK_QUEUE = CLICKS
MAX_BATCH = 1000


def client_hash(address: str, secret: str) -> str:
    """What a click keeps of the client's address (merci.fraud: many accounts behind one
    address): keyed with MERCI_SECRET_KEY, because the IPv4 space is small enough to walk
    back through a plain hash."""
    return hmac.new(secret.encode(), b"merci.client:" + address.encode(), hashlib.sha256).hexdigest()[:32]


def sign_batch(batch: list[list[Any]], secret: str) -> str:
    """The API's signature on a batch of accepted clicks. The API role may enqueue
    clicks.ingest (migration 0014), so one SQL injection could queue a click spending any
    supporter's budget; without MERCI_SECRET_KEY it cannot sign one, and the worker
    ingests only signed batches."""
    body = orjson.dumps(batch)
    return hmac.new(secret.encode(), b"merci.clicks:" + body, hashlib.sha256).hexdigest()


def signed(batch: list[list[Any]], signature: str | None, secret: str) -> bool:
    return signature is not None and hmac.compare_digest(signature, sign_batch(batch, secret))


def of_supporter(*, supporter_id: int, period: date) -> Keyset:
    """A supporter's stored clicks of a month, newest first."""
    return Keyset("select id, thing_id, period, accepted_at, source, idempotency_key from clicks"
                  " where supporter_id = $1 and period = $2", (supporter_id, period))


# The SQLSTATE of a batch written into a month whose close has begun since its clicks were
# checked (migration 0030): the batch is refused MONTH_CLOSED, never PENDING first.
MONTH_CLOSING = "MC001"


def month_closing(exc: BaseException) -> bool:
    """Whether `exc` is that refusal (from asyncpg, or psycopg in the broker's client)."""
    return getattr(exc, "sqlstate", None) == MONTH_CLOSING


def month_closed() -> UserError:
    """A click into a month whose close has started: refused at once, rather than
    answered PENDING and refused by the workers after (issue 17)."""
    return UserError("MONTH_CLOSED", "this month is being closed: clicks count from the next one", None)


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
    client_hash: str | None = None  # the button, /submit and flattr: merci.clicks.client_hash

    def message(self) -> list[Any]:
        return [self.supporter_id, self.tenant_id, self.thing_id, self.url, self.idempotency_key,
                self.accepted_at.isoformat(), self.source, self.client_hash]


@dataclass(frozen=True)
class ClickRequest:
    """A click as the API received it, with its key checked and its URL normalized."""

    supporter_id: int
    tenant_id: int
    thing_id: int | None
    url: str | None
    idempotency_key: str
    client_hash: str | None = None


def check_request(*, supporter_id: int, tenant_id: int, thing_id: int | None, url: str | None,
                  idempotency_key: str, client_hash: str | None = None) -> ClickRequest:
    """The checks that need no database; raises UserError (UserErrors: all of them)."""
    checks = Checks()
    key = checks(check_key, idempotency_key)
    if (thing_id is None) == (url is None):
        checks.refuse(UserError("INVALID_TARGET", "give either thingId or url", "thingId"))
    elif url is not None:
        url = checks(normalize_url, url)
    checks.done()
    return ClickRequest(supporter_id, tenant_id, thing_id, url, key, client_hash)


# One round trip for any number of clicks of one tenant, answered per click in order.
PRECHECK_SQL = f"""
with input as (
    select x.i::integer as i, x.supporter_id, x.thing_id, x.url, x.key
      from unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[])
           with ordinality as x(supporter_id, thing_id, url, key, i)
),
balances as (
    {supporter_balances_sql(supporters="select supporter_id from input", currency="$6")}
)
select i.i, t.id as thing_id, t.owner_id, coalesce(b.balance, 0)::bigint as balance,
       -- one's own thing: held, or covered by one of one's verified sites (even if not yet made)
       (t.owner_id is not null and t.owner_id = i.supporter_id)
       or exists (select 1 from sites s where s.owner_id = i.supporter_id and s.verified_scope is not null
                     and merci_covers(s.verified_scope, coalesce(t.canon, merci_canon(i.url)))) as own,
       exists (select 1 from clicks c where c.supporter_id = i.supporter_id and c.thing_id = t.id
                                        and c.period = $5) as clicked,
       exists (select 1 from clicks c where c.supporter_id = i.supporter_id
                                        and c.idempotency_key = i.key) as replayed,
       -- the month's close has started: the workers would refuse it (issue 17)
       exists (select 1 from month_closes m where m.period = $5) as closing
  from input i
  left join things t on t.id = coalesce(i.thing_id, (select u.id from things u where u.canon = merci_canon(i.url)))
  left join balances b on b.supporter_id = i.supporter_id
 order by i.i
"""


async def precheck_many(
    conn: asyncpg.Connection, requests: list[ClickRequest], *, currency: str, now: datetime,
) -> list[Accepted | UserError]:
    """The API's cheap checks for clicks of one tenant, in one round trip. The worker
    re-applies the rules; here a second click of a thing within one batch is already
    refused, and the same key twice is answered twice as one click."""
    period = period_of(now)
    rows = await conn.fetch(PRECHECK_SQL, [r.supporter_id for r in requests], [r.thing_id for r in requests],
                            [r.url for r in requests], [r.idempotency_key for r in requests], period, currency)
    out: list[Accepted | UserError] = []
    by_key: dict[tuple[int, str], Accepted] = {}
    targets: set[tuple[int, object]] = set()
    for r, row in zip(requests, rows, strict=True):
        where = "thingId" if r.thing_id is not None else "url"
        accepted = Accepted(r.supporter_id, r.tenant_id, row["thing_id"] or r.thing_id,
                            None if row["thing_id"] else r.url, r.idempotency_key, now,
                            client_hash=r.client_hash)
        if row["replayed"] or (r.supporter_id, r.idempotency_key) in by_key:
            # The same request again: answer as before, count nothing new.
            out.append(by_key.get((r.supporter_id, r.idempotency_key), accepted))
        elif r.thing_id is not None and row["thing_id"] is None:
            out.append(UserError("UNKNOWN_THING", "no such thing", where))
        elif row["own"]:
            out.append(UserError("OWN_THING", "you cannot click your own thing", where))
        elif row["clicked"] or (r.supporter_id, row["thing_id"] or r.url) in targets:
            out.append(UserError("ALREADY_THIS_MONTH", "you already clicked this thing this month", where))
        elif row["balance"] < MIN_BUDGET:
            out.append(UserError("NO_MEANS", "top up your balance before clicking", None))
        elif row["closing"]:  # (last: what is wrong with the click itself says more)
            out.append(month_closed())
        else:
            by_key[(r.supporter_id, r.idempotency_key)] = accepted
            targets.add((r.supporter_id, row["thing_id"] or r.url))
            out.append(accepted)
    return out


async def precheck(
    conn: asyncpg.Connection, *, supporter_id: int, tenant_id: int, thing_id: int | None, url: str | None,
    idempotency_key: str, currency: str, now: datetime, client_hash: str | None = None,
) -> Accepted:
    """One click's cheap checks; raises UserError."""
    request = check_request(supporter_id=supporter_id, tenant_id=tenant_id, thing_id=thing_id, url=url,
                            idempotency_key=idempotency_key, client_hash=client_hash)
    [result] = await precheck_many(conn, [request], currency=currency, now=now)
    if isinstance(result, UserError):
        raise result
    return result


Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    """Concurrent callers share one round trip: whatever arrives while a batch is in
    flight goes in the next, so batches grow with the load by themselves and a lone
    caller waits for nobody. `run` answers each item of a batch, in order, with a
    result or an exception for that item; if `run` itself fails, the whole batch fails.
    """

    def __init__(self, run: Callable[[list[Item]], Awaitable[list[Result | BaseException]]],
                 max_batch: int = MAX_BATCH) -> None:
        self.run = run
        self.max_batch = max_batch
        self.pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self.flushing = False

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self.pending.append((item, future))
        if not self.flushing:
            self.flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch:]
                try:
                    results = await self.run([item for item, _ in batch])
                except Exception as exc:  # e.g. the broker or the database is down: nobody is answered "yes"
                    for _, f in batch:
                        if not f.done():
                            f.set_exception(exc)
                    continue
                for (_, f), result in zip(batch, results, strict=True):
                    if f.done():
                        continue
                    if isinstance(result, BaseException):
                        f.set_exception(result)
                    else:
                        f.set_result(result)
        finally:
            self.flushing = False


class ClickBatcher(GroupCommit[Accepted, None]):
    """Group commit of accepted clicks (the button, /submit): one hand-over per batch and
    tenant (Handoff). A request is answered only once its click is durable."""

    def __init__(self, handoff: Handoff, connect: Connect, max_batch: int = MAX_BATCH) -> None:
        self.handoff = handoff

        async def run(batch: list[Accepted]) -> list[None | BaseException]:
            if not handoff.outbox:
                await handoff.direct(batch)
                return [None] * len(batch)
            out: list[None | BaseException] = [None] * len(batch)
            for tenant_id in sorted({c.tenant_id for c in batch}):
                at = [i for i, c in enumerate(batch) if c.tenant_id == tenant_id]
                try:
                    await handoff.held(connect, tenant_id, [batch[i] for i in at], receipts=[])
                except Exception as exc:  # the database: these are not accepted
                    for i in at:
                        out[i] = exc
            return out

        super().__init__(run, max_batch)


# Hands a signed batch to the broker: (messages, signature, outbox row id or None).
Send = Callable[[list[list[Any]], str, str | None], Awaitable[object]]
# A connection under a tenant's scope, whose work is committed when the block ends.
Connect = Callable[[int], AbstractAsyncContextManager[asyncpg.Connection]]


class Handoff:
    """How the API hands accepted clicks to the workers, so that accepted means durable
    in PostgreSQL (issue 17).

    With the PostgreSQL broker a message is a row in PostgreSQL: once sent it is durable,
    and nothing more is written (`direct`). With Redis or RabbitMQ it is not (a Redis
    restarted without its data lost every click it held), so each tenant's batch is
    first written to click_outbox with its clicks' receipts, in one statement committed
    before its message is sent (`held`): the worker deletes the row in the transaction
    that stores the clicks, and the scheduler sends again a row nobody deleted
    (merci.click_outbox). Once the row is written the clicks are accepted, broker or not:
    a batch the broker refused is marked unsent, and the scheduler's next tick sends it.
    """

    def __init__(self, send: Send, *, secret: str, outbox: bool) -> None:
        self.send = send
        self.secret = secret
        self.outbox = outbox
        # A broker down under a stream of clicks: one warning, a count, and when it is back.
        self.broker = OutageLog("handing accepted clicks to the broker")

    async def hand(self, connect: Connect, tenant_id: int, clicks: list[Accepted],
                   receipts: list[ReceiptRow] | None = None) -> None:
        """Accept `clicks` (of the scope `tenant_id`), or raise: then none is accepted."""
        if self.outbox:
            await self.held(connect, tenant_id, clicks, receipts)
        else:
            await self.direct(clicks)

    async def direct(self, clicks: list[Accepted]) -> None:
        batch = [c.message() for c in clicks]
        try:
            await self.send(batch, sign_batch(batch, self.secret), None)
        except Exception as exc:  # (the caller answers the clicks UNAVAILABLE)
            if month_closing(exc):  # the close began since the checks: refused, and no outage
                raise month_closed() from exc
            self.broker.failed(exc, clicks=len(clicks))
            raise
        self.broker.ok()
        _accepted(len(clicks))

    async def held(self, connect: Connect, tenant_id: int, clicks: list[Accepted],
                   receipts: list[ReceiptRow] | None) -> None:
        """Written to the outbox (with `receipts` and the clicks' own, unless None), then
        sent. Raises only when the row could not be written."""
        batch = [c.message() for c in clicks]
        signature = sign_batch(batch, self.secret)
        outbox_id = str(uuid.uuid4())
        try:
            async with connect(tenant_id) as conn:
                await hold(conn, outbox_id=outbox_id, tenant_id=tenant_id, batch=batch, signature=signature,
                           receipts=None if receipts is None else [*receipts, *map(queued_row, clicks)])
        except Exception as exc:
            if month_closing(exc):  # the close began since the checks: nothing was written
                raise month_closed() from exc
            raise
        _accepted(len(clicks))
        try:
            await self.send(batch, signature, outbox_id)
            self.broker.ok()
        except Exception as exc:  # accepted all the same: the scheduler sends it at its next tick
            self.broker.failed(exc, clicks=len(clicks), kept="in the outbox")
            try:
                async with connect(tenant_id) as conn:
                    await conn.execute("update click_outbox set sent_at = null where id = $1::uuid", outbox_id)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as err:
                # Then the scheduler sends it once it looks lost (settings.click_resend_seconds).
                log.warning("outboxed clicks not marked unsent", error=str(err), clicks=len(clicks))


def _accepted(n: int) -> None:
    from merci import metrics  # (prometheus_client: not at import, see workers' worker_metrics)

    metrics.CLICKS_ACCEPTED.inc(n)


HOLD_SQL = """
insert into click_outbox (id, tenant_id, batch, signature) values ($1::uuid, $2, $3::text::jsonb, $4)
"""


async def hold(conn: asyncpg.Connection, *, outbox_id: str, tenant_id: int, batch: list[list[Any]], signature: str,
               receipts: list[ReceiptRow] | None) -> None:
    """The batch in the outbox, and its receipts, in one statement (atomic without a
    transaction: PrecheckBatcher's connection has none)."""
    args: tuple[Any, ...] = (outbox_id, tenant_id, orjson.dumps(batch).decode(), signature)
    latest = {(r[0], r[1]): r for r in receipts or ()}  # (as record_receipts)
    if not latest:
        await conn.execute(HOLD_SQL, *args)
        return
    await conn.execute(f"with held as ({HOLD_SQL}) {receipts_sql(first=5)}", *args,
                       *(list(c) for c in zip(*latest.values(), strict=True)))


# ----------------------------------------------------------------- receipts

# How long the receipt of a click refused at once is kept (then its key reads UNKNOWN).
REFUSAL_KEPT_DAYS = 7
# Queued for longer than this: its message was lost (none should be; this bounds the table).
LOST_AFTER_DAYS = 35
# What the API answers is not a refusal of the click: the client may send it again.
NOT_REFUSALS = frozenset({"UNAVAILABLE", "UNAUTHENTICATED", "INVALID_IDEMPOTENCY_KEY"})

# (supporter, key, tenant, refusal or None while queued, thing, period): a click_receipts row.
ReceiptRow = tuple[int, str, int, str | None, int | None, date]


@dataclass(frozen=True)
class Receipt:
    """What became of a click: accepted (stored by the workers), refused (by the API at
    once, or by the workers), pending (queued), or unknown (never seen, or forgotten)."""

    status: str
    code: str | None = None
    thing_id: int | None = None
    period: date | None = None


def queued_row(click: Accepted) -> ReceiptRow:
    return (click.supporter_id, click.idempotency_key, click.tenant_id, None, click.thing_id,
            period_of(click.accepted_at))


def refused_row(*, supporter_id: int, tenant_id: int, key: str, error: UserError, thing_id: int | None,
                now: datetime) -> ReceiptRow | None:
    """The receipt of a click the API refused at once; None when there is nothing to
    remember (a key that is not one, or an answer that is no refusal of the click)."""
    if error.code in NOT_REFUSALS:
        return None
    try:
        key = check_key(key)
    except UserError:
        return None
    return (supporter_id, key, tenant_id, error.code, thing_id, period_of(now))


def receipts_sql(*, first: int = 1) -> str:
    """The upsert of receipts, its six arrays numbered from `first`."""
    a, b, c, d, e, f = (f"${i}" for i in range(first, first + 6))
    return f"""
insert into click_receipts as r (supporter_id, idempotency_key, tenant_id, refusal, thing_id, period)
select * from unnest({a}::bigint[], {b}::text[], {c}::bigint[], {d}::text[], {e}::bigint[], {f}::date[])
on conflict (supporter_id, idempotency_key) do update
   set tenant_id = excluded.tenant_id, refusal = excluded.refusal, thing_id = excluded.thing_id,
       period = excluded.period, at = now()
"""


RECORD_RECEIPTS_SQL = receipts_sql()


async def record_receipts(conn: asyncpg.Connection, rows: list[ReceiptRow]) -> None:
    """What the API answered, one statement for a batch (the last answer to a key wins)."""
    latest = {(r[0], r[1]): r for r in rows}  # one key twice in a statement: the upsert would refuse it
    if latest:
        await conn.execute(RECORD_RECEIPTS_SQL, *(list(c) for c in zip(*latest.values(), strict=True)))


async def forget_queued(conn: asyncpg.Connection, clicks: list[Accepted]) -> None:
    """The broker did not take these after all: their receipts go back to UNKNOWN."""
    await conn.execute(
        "delete from click_receipts r using unnest($1::bigint[], $2::text[]) as x(s, k)"
        " where r.supporter_id = x.s and r.idempotency_key = x.k and r.refusal is null",
        [c.supporter_id for c in clicks], [c.idempotency_key for c in clicks])


RECEIPT_SQL = f"""
select 'accepted' as status, null::text as code, thing_id, period::date, ingested_at as at, 0 as rank from clicks
 where supporter_id = $1 and idempotency_key = $2
union all
select 'refused', reason, thing_id, period::date, at, 1 from click_rejections
 where supporter_id = $1 and idempotency_key = $2
union all
select case when refusal is null then 'pending' else 'refused' end, refusal, thing_id, period::date, at, 1
  from click_receipts where supporter_id = $1 and idempotency_key = $2
union all
-- accepted and not yet stored (migration 0024): its receipt may be gone (UNLOGGED, lost
-- in a crash of PostgreSQL), its outbox row is not. Only then is the outbox read: it has
-- no index into its batches, and holds a lot while the broker is down.
select 'pending', null, (m->>2)::bigint, {sql_period_of("(m->>5)::timestamptz")}, o.created_at, 1
  from click_outbox o cross join lateral jsonb_array_elements(o.batch) m
 where not exists (select 1 from click_receipts where supporter_id = $1 and idempotency_key = $2)
   and (m->>0)::bigint = $1 and m->>4 = $2
order by rank, at desc limit 1
"""


async def receipt(conn: asyncpg.Connection, *, supporter_id: int, key: str) -> Receipt:
    """A stored click wins; otherwise the newer of a worker's refusal and the API's own
    answer (the same key may have been sent again since); otherwise nobody saw it."""
    row = await conn.fetchrow(RECEIPT_SQL, supporter_id, key.strip())
    if row is None:
        return Receipt("unknown")
    return Receipt(row["status"], row["code"], row["thing_id"], row["period"])


async def purge_receipts(conn: asyncpg.Connection) -> int:
    """Forget what the workers have settled since (their rows answer now), refusals after
    REFUSAL_KEPT_DAYS, and anything queued longer than a month lasts; as merci_system,
    from the scheduler."""
    done = await conn.fetchval(f"""
        with gone as (
            delete from click_receipts r
             where (r.refusal is null and (
                        exists (select 1 from clicks c where c.supporter_id = r.supporter_id
                                   and c.idempotency_key = r.idempotency_key)
                        -- (a refusal older than the answer is not this sending's outcome)
                     or exists (select 1 from click_rejections x where x.supporter_id = r.supporter_id
                                   and x.idempotency_key = r.idempotency_key and x.at >= r.at)
                     or r.at < now() - interval '{LOST_AFTER_DAYS} days'))
                or (r.refusal is not null and r.at < now() - interval '{REFUSAL_KEPT_DAYS} days')
            returning 1)
        select count(*) from gone""")
    return int(done)


def unavailable() -> UserError:
    return UserError("UNAVAILABLE", "clicks cannot be accepted right now; try again", None)


class PrecheckBatcher(GroupCommit[ClickRequest, Accepted]):
    """Group commit of the API's clicks: checked together, then (with `handoff`) handed
    over together, and only then answered; a click that could not be made durable is
    answered UNAVAILABLE (not accepted: the client may retry safely).

    The checks are one read-only statement per tenant on a connection of its own, so
    they need no transaction: the tenant is set for the session (RLS reads it) and only
    changed when the next batch is another tenant's. The connection serves nothing else
    (the outbox's one statement per tenant included: see Handoff).
    """

    def __init__(self, dsn: str, *, currency: str, handoff: Handoff | None = None,
                 max_batch: int = MAX_BATCH) -> None:
        self.dsn = dsn
        self.conn: asyncpg.Connection | None = None
        self.tenant_id: int | None = None

        async def run(batch: list[ClickRequest]) -> list[Accepted | BaseException]:
            now = datetime.now(UTC)
            results = await self._check(batch, currency, now)
            accepted = [r for r in results if isinstance(r, Accepted)]
            receipts = [row for row in (
                refused_row(supporter_id=q.supporter_id, tenant_id=q.tenant_id, key=q.idempotency_key, error=r,
                            thing_id=q.thing_id, now=now)
                for q, r in zip(batch, results, strict=True) if isinstance(r, UserError)) if row is not None]
            if handoff is None or not accepted:  # (without `handoff`, the caller queues and the workers answer)
                await self._record(receipts)
                return results
            if handoff.outbox:
                return await self._held(handoff, results, receipts)
            # The receipts of the queued clicks are written while their message is sent, so
            # that a receipt asked for as soon as the answer arrives already reads PENDING.
            sent, _ = await asyncio.gather(handoff.direct(accepted),
                                           self._record([*receipts, *map(queued_row, accepted)]),
                                           return_exceptions=True)
            if isinstance(sent, UserError):  # their month's close began since the checks: refused
                await self._record(self._refused(accepted, sent, now))
                return [sent if isinstance(r, Accepted) else r for r in results]
            if isinstance(sent, Exception):  # the broker is down: none of these is accepted (Handoff logs it)
                await self._forget(accepted)
                return [unavailable() if isinstance(r, Accepted) else r for r in results]
            return results

        super().__init__(run, max_batch)

    async def _held(self, handoff: Handoff, results: list[Accepted | BaseException],
                    receipts: list[ReceiptRow]) -> list[Accepted | BaseException]:
        """Each tenant's accepted clicks and receipts in the outbox, then sent (Handoff.held)."""
        out = list(results)
        tenants = sorted({r.tenant_id for r in results if isinstance(r, Accepted)} | {r[2] for r in receipts})
        for tenant_id in tenants:
            mine = [r[2] == tenant_id for r in receipts]
            clicks = [r for r in results if isinstance(r, Accepted) and r.tenant_id == tenant_id]
            if not clicks:
                await self._record([r for r, m in zip(receipts, mine, strict=True) if m])
                continue
            try:
                await handoff.held(self._session, tenant_id, clicks,
                                   [r for r, m in zip(receipts, mine, strict=True) if m])
            except UserError as refused:  # their month's close began since the checks
                now = clicks[0].accepted_at
                await self._record([*(r for r, m in zip(receipts, mine, strict=True) if m),
                                    *self._refused(clicks, refused, now)])
                out = [refused if isinstance(r, Accepted) and r.tenant_id == tenant_id else r for r in out]
            except Exception as exc:  # the database: these clicks are not accepted
                log.warning("clicks could not be written to the outbox", exc_info=exc, clicks=len(clicks))
                await self.close()
                out = [unavailable() if isinstance(r, Accepted) and r.tenant_id == tenant_id else r for r in out]
        return out

    @staticmethod
    def _refused(clicks: list[Accepted], error: UserError, now: datetime) -> list[ReceiptRow]:
        return [row for row in (refused_row(supporter_id=c.supporter_id, tenant_id=c.tenant_id,
                                            key=c.idempotency_key, error=error, thing_id=c.thing_id, now=now)
                                for c in clicks) if row is not None]

    @asynccontextmanager
    async def _session(self, tenant_id: int) -> AsyncIterator[asyncpg.Connection]:
        yield await self._connection(tenant_id)

    async def _check(self, batch: list[ClickRequest], currency: str, now: datetime) -> list[Accepted | BaseException]:
        try:
            return await self._check_once(batch, currency, now)
        except (asyncpg.InternalClientError, asyncpg.ConnectionDoesNotExistError):
            # A PostgreSQL restart cuts the connection while it sits idle between batches:
            # the next statement fails with "connection was closed", or, when asyncpg has
            # read the server's goodbye but not yet seen the socket close, with "another
            # operation is in progress" (InternalClientError), which no outage check knows
            # (the API answered it with a bare 500). _check_once dropped the connection: the
            # checks only read, so they run once more on a new one, which connects (the
            # server is back: the clicks are not refused for nothing) or fails as an outage.
            return await self._check_once(batch, currency, now)

    async def _check_once(self, batch: list[ClickRequest], currency: str,
                          now: datetime) -> list[Accepted | BaseException]:
        tenants = {r.tenant_id for r in batch}
        try:
            if len(tenants) == 1:
                conn = await self._connection(batch[0].tenant_id)
                return list(await precheck_many(conn, batch, currency=currency, now=now))
            results: list[Accepted | BaseException] = list(batch)  # type: ignore[arg-type]  # all replaced
            for tenant_id in sorted(tenants):
                at = [i for i, r in enumerate(batch) if r.tenant_id == tenant_id]
                conn = await self._connection(tenant_id)
                answers = await precheck_many(conn, [batch[i] for i in at], currency=currency, now=now)
                for i, answer in zip(at, answers, strict=True):
                    results[i] = answer
            return results
        except BaseException:
            await self.close()  # whatever state it is in, the next batch starts afresh
            raise

    async def _record(self, rows: list[ReceiptRow]) -> None:
        """Receipts, per tenant (RLS). A failure loses only receipts: the clicks are in
        the broker all the same, and read UNKNOWN, then ACCEPTED once stored."""
        try:
            for tenant_id in sorted({r[2] for r in rows}):
                await record_receipts(await self._connection(tenant_id), [r for r in rows if r[2] == tenant_id])
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.warning("click receipts not recorded", exc_info=exc, clicks=len(rows))
            await self.close()

    async def _forget(self, clicks: list[Accepted]) -> None:
        try:
            for tenant_id in sorted({c.tenant_id for c in clicks}):
                await forget_queued(await self._connection(tenant_id), [c for c in clicks if c.tenant_id == tenant_id])
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.warning("click receipts not forgotten", exc_info=exc, clicks=len(clicks))
            await self.close()

    async def _connection(self, tenant_id: int) -> asyncpg.Connection:
        if self.conn is None or self.conn.is_closed():
            self.conn = await asyncpg.connect(self.dsn)
            self.tenant_id = None
        if self.tenant_id != tenant_id:
            await self.conn.execute(
                "select set_config('merci.tenant_id', $1, false), set_config('merci.account_id', '', false),"
                " set_config('merci.platform_admin', 'off', false)", str(tenant_id))
            self.tenant_id = tenant_id
        return self.conn

    async def close(self) -> None:
        conn, self.conn, self.tenant_id = self.conn, None, None
        if conn is not None and not conn.is_closed():
            conn.terminate()


# ----------------------------------------------------------------- ingestion

INGEST_SQL = f"""
with input as (
    select * from unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::timestamptz[],
                         $7::text[], $8::text[])
        as x(supporter_id, tenant_id, thing_id, url, idempotency_key, accepted_at, source, client_hash)
),
resolved as (
    select i.supporter_id, i.tenant_id, coalesce(i.thing_id, t.id) as thing_id, i.url, i.idempotency_key,
           i.accepted_at, i.source, i.client_hash, {sql_period_of('i.accepted_at')} as period
      from input i left join things t on i.thing_id is null and t.canon = merci_canon(i.url)
),
checked as (
    -- one's own thing: held, or covered by one of one's verified sites
    select r.*, th.id as found, coalesce(th.owner_id = r.supporter_id
                         or exists (select 1 from sites s where s.owner_id = r.supporter_id
                                       and s.verified_scope is not null and merci_covers(s.verified_scope, th.canon)),
                         false) as own
      from resolved r left join things th on th.id = r.thing_id
),
valid as (
    select r.* from checked r
     where r.found is not null and not r.own
       and not exists (select 1 from month_closes m where m.period = r.period)
),
inserted as (
    insert into clicks (tenant_id, supporter_id, thing_id, period, accepted_at, idempotency_key, source, client_hash)
    select tenant_id, supporter_id, thing_id, period, accepted_at, idempotency_key, source, client_hash
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
    select r.supporter_id, r.idempotency_key, r.tenant_id, r.found, r.url, r.period,
           case when r.found is null then 'INVALID_URL'
                when r.own then 'OWN_THING'
                when exists (select 1 from month_closes m where m.period = r.period) then 'MONTH_CLOSED'
                else 'ALREADY_THIS_MONTH' end
      from checked r
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


async def ingest(conn: asyncpg.Connection, batch: list[list[Any]], *, outbox_id: str | None = None,
                 signature: str | None = None) -> tuple[int, int]:
    """Store a batch of accepted clicks (as merci_system). Returns (stored, refused).
    `outbox_id`: the batch's row in click_outbox, deleted in the same transaction
    (matched on the batch's `signature`)."""
    if not batch:
        if outbox_id is not None and signature is not None:
            await click_outbox.settle(conn, outbox_id=outbox_id, signature=signature)
        return 0, 0
    # (A message queued before clicks carried their client's address has 7 items.)
    cols = list(zip(*(m if len(m) > 7 else [*m, None] for m in batch), strict=True))
    accepted_at = [datetime.fromisoformat(a) for a in cols[5]]
    periods = sorted({month_key(period_of(a)) for a in accepted_at})
    async with conn.transaction():
        for key in periods:
            await conn.execute("select pg_advisory_xact_lock_shared($1, $2)", locks.MONTH, key)
        # Auto-submit: an unknown URL becomes an unclaimed thing of the clicker's tenant.
        unknown = sorted({(u, t) for u, t, th in zip(cols[3], cols[1], cols[2], strict=True) if th is None and u})
        if unknown:
            await conn.execute(
                "insert into things (tenant_id, url) select distinct on (u) t, u"
                " from unnest($1::text[], $2::bigint[]) as x(u, t) order by u on conflict (canon) do nothing",
                [u for u, _ in unknown], [t for _, t in unknown],
            )
        row = await conn.fetchrow(INGEST_SQL, list(cols[0]), list(cols[1]), list(cols[2]), list(cols[3]),
                                  list(cols[4]), accepted_at, list(cols[6]), list(cols[7]))
        if outbox_id is not None and signature is not None:
            await click_outbox.settle(conn, outbox_id=outbox_id, signature=signature)
    return int(row["inserted"]), int(row["refused"])
