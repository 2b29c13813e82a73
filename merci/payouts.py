"""Payouts: a creator's earnings sent out through a payout provider.

- `request` (the API, as the creator): at least the threshold, at most what is
  available (earnings less what pending requests reserve), one payout per idempotency
  key. It writes a pending request and moves no money.
- `send` (a money worker, as merci_system): asks the provider to transfer (the payout's
  own key makes that idempotent), then posts the `payout` journal (earnings → the
  outside world, which fires `payout.sent`) and marks it sent, in one transaction. A
  provider's refusal marks it failed and the earnings stay, as does finding the earnings
  no longer cover it (a correction took some) before anything is sent; passing trouble raises, and
  Dramatiq retries. A crash between the transfer and the journal is retried the same
  way: the provider answers the same key with the same transfer, and the journal's
  idempotency key posts it once.
- The scheduler re-sends requests left pending (a lost message, a dead worker).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from merci import budgets, ledger, locks
from merci.errors import UserError
from merci.money import Money, parse_amount
from merci.paging import Keyset
from merci.payments import PayoutProvider, PayoutRefused
from merci.queue import MONEY

PAYOUT_ACTOR = "payouts.send"
PAYOUT_QUEUE = MONEY
RESEND_AFTER_SECONDS = 300  # the scheduler re-sends requests pending longer than this
MAX_KEY = 100
COLUMNS = ("id, tenant_id, account_id, amount, currency, provider, idempotency_key, status, reference, reason,"
           " created_at, settled_at")


@dataclass(frozen=True)
class Payout:
    id: int
    tenant_id: int
    account_id: int
    amount: int
    currency: str
    provider: str
    idempotency_key: str
    status: str  # pending | sent | failed
    reference: str | None
    reason: str | None
    created_at: datetime
    settled_at: datetime | None

    @classmethod
    def of(cls, row: asyncpg.Record) -> Payout:
        return cls(**dict(row))



def of_account(*, account_id: int) -> Keyset:
    """An account's payouts, newest first (RLS shows a creator only their own)."""
    return Keyset(f"select {COLUMNS} from payouts where account_id = $1", (account_id,))


def check_key(key: object) -> str:
    if not isinstance(key, str) or not key.strip():
        raise UserError("INVALID_IDEMPOTENCY_KEY", "idempotencyKey is required: one key, one payout",
                        "idempotencyKey")
    key = key.strip()
    if len(key) > MAX_KEY:
        raise UserError("INVALID_IDEMPOTENCY_KEY", f"idempotencyKey is at most {MAX_KEY} characters",
                        "idempotencyKey")
    return key


# Earnings less what pending requests reserve ($2 account, $3 currency), in one statement
# and so in one snapshot. Two statements would not be: a send that commits between them
# (it posts its journal and marks its payout sent at once) leaves the earnings read
# before it and the reservations after it, and the amount it sent looks free again.
AVAILABLE_SQL = (f"select ({ledger.OWNER_BALANCE_SQL}) - (select coalesce(sum(amount), 0)::bigint from payouts"
                 " where account_id = $2 and currency = $3 and status = 'pending')")


async def available(conn: asyncpg.Connection, *, account_id: int, currency: str) -> int:
    """Earnings not yet paid out, less what pending requests reserve."""
    free: int = await conn.fetchval(AVAILABLE_SQL, "creator", account_id, currency)
    return free


async def request(conn: asyncpg.Connection, *, tenant_id: int, account_id: int, amount: object | None,
                  currency: str, threshold: int, idempotency_key: object, provider: str) -> Payout:
    """A pending payout of `amount` (all that is available when None); the same key gives
    back the same payout. Runs in the caller's transaction, as the creator."""
    key = check_key(idempotency_key)
    # One request at a time per creator: what one reserves, the next one sees (each
    # statement below reads after the lock is held; READ COMMITTED snapshots per statement).
    await conn.execute("select pg_advisory_xact_lock(hashtextextended($1::text || $2::bigint, 0))",
                       locks.PAYOUT_PREFIX, account_id)
    row = await conn.fetchrow(f"select {COLUMNS} from payouts where account_id = $1 and idempotency_key = $2",
                              account_id, key)
    if row is not None:
        if amount is not None and row["amount"] != amount:
            raise UserError("IDEMPOTENCY_KEY_REUSED", "this idempotencyKey already asked for another amount",
                            "idempotencyKey")
        return Payout.of(row)
    free = await available(conn, account_id=account_id, currency=currency)
    minor = free if amount is None else parse_amount(amount)
    if minor < threshold:
        what = "your available earnings are" if amount is None else "a payout is"
        raise UserError("BELOW_THRESHOLD", f"payouts start at {Money(threshold, currency).format()};"
                        f" {what} {Money(minor, currency).format()}", "amount")
    if minor <= free:
        # Checked again in the insert itself: a correction may have taken earnings since.
        row = await conn.fetchrow(
            "insert into payouts (tenant_id, account_id, amount, currency, provider, idempotency_key)"
            f" select $4, $2, $5, $3, $6, $7 where ({AVAILABLE_SQL}) >= $5 returning {COLUMNS}",
            "creator", account_id, currency, tenant_id, minor, provider, key)
        if row is not None:
            return Payout.of(row)
        free = await available(conn, account_id=account_id, currency=currency)
    raise UserError("INSUFFICIENT_EARNINGS", f"only {Money(max(free, 0), currency).format()} of your earnings"
                    " can be paid out now", "amount")


async def send(conn: asyncpg.Connection, *, payout_id: int, provider: PayoutProvider) -> str:
    """Send one payout (as merci_system); returns its status afterwards. Idempotent."""
    row = await conn.fetchrow(f"select {COLUMNS} from payouts where id = $1", payout_id)
    if row is None or row["status"] != "pending":
        return "missing" if row is None else str(row["status"])
    p = Payout.of(row)
    posted = await conn.fetchval("select 1 from journals where idem_key = $1", f"payout:{p.id}")
    if not posted and await budgets.earnings(conn, account_id=p.account_id, currency=p.currency) < p.amount:
        # Only a correction could have taken earnings since the request: send nothing.
        return await _fail(conn, p.id, "the earnings no longer cover it")
    try:
        transfer = await provider.send(account_id=p.account_id, amount=Money(p.amount, p.currency),
                                       idempotency_key=f"merci-payout-{p.id}")
    except PayoutRefused as refused:
        return await _fail(conn, p.id, refused.reason[:500])
    async with conn.transaction():
        status = await conn.fetchval("select status from payouts where id = $1 for update", p.id)
        if status != "pending":
            return str(status)
        earnings = await ledger.account_id(conn, kind="creator", tenant_id=p.tenant_id, currency=p.currency,
                                           owner_account_id=p.account_id)
        out = await ledger.account_id(conn, kind="payout", tenant_id=p.tenant_id, currency=p.currency,
                                      owner_account_id=p.account_id)
        journal = await ledger.post(
            conn, tenant_id=p.tenant_id, kind="payout", idem_key=f"payout:{p.id}",
            lines=[(earnings, Money(-p.amount, p.currency)), (out, Money(p.amount, p.currency))],
            memo=f"payout via {transfer.provider} ({transfer.reference})")
        if journal is None:  # posted before, by a run that died before marking it
            journal = await conn.fetchval("select id from journals where idem_key = $1", f"payout:{p.id}")
        await conn.execute(
            "update payouts set status = 'sent', reference = $2, journal_id = $3, settled_at = now() where id = $1",
            p.id, transfer.reference, journal)
    return "sent"


async def _fail(conn: asyncpg.Connection, payout_id: int, reason: str) -> str:
    await conn.execute("update payouts set status = 'failed', reason = $2, settled_at = now()"
                       " where id = $1 and status = 'pending'", payout_id, reason)
    return "failed"


async def stale(conn: asyncpg.Connection, *, now: datetime) -> list[int]:
    """Requests pending for longer than RESEND_AFTER_SECONDS: their message may be lost.
    (Not `sepa` ones: they wait for the operator's batch, merci.sepa.)"""
    return [r["id"] for r in await conn.fetch(
        "select id from payouts where status = 'pending' and provider <> 'sepa'"
        " and created_at < $1::timestamptz - make_interval(secs => $2)"
        " order by id limit 1000", now, RESEND_AFTER_SECONDS)]
