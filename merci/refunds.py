"""Refunds: a supporter's unspent balance back to the card a top-up came from.

- `request` (the API, as the supporter): a `requested` row for one of their own paid
  top-ups; the amount at most what is left of that top-up and what is unspent now
  (all of that when none is given). Nothing moves yet.
- `send` (a worker, as merci_system): under the supporter's balance lock, the same
  bounds again (the balance may have been spent meanwhile; a dispute forbids it), then
  the `refund` journal (balance → the outside world) and only then Stripe's refund,
  keyed on the row (`merci-refund-<id>`): a crash between them is retried with the
  same key, and the journal's key posts it once. Stripe's refusal posts the reversal
  (`refund_reversal`) and the money is back in the balance.
Refunds of one top-up never exceed it; a refund never exceeds the unspent balance.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from merci import budgets, ledger
from merci.errors import UserError
from merci.money import Money, parse_amount
from merci.paging import Keyset
from merci.queue import MONEY
from merci.stripe_api import Stripe, StripeError

REFUND_ACTOR = "refunds.send"
REFUND_QUEUE = MONEY
COLUMNS = ("id, tenant_id, account_id, topup_id, amount, currency, idempotency_key, status, stripe_refund_id,"
           " reason, created_at, settled_at")


@dataclass(frozen=True)
class Refund:
    id: int
    tenant_id: int
    account_id: int
    topup_id: int
    amount: int
    currency: str
    idempotency_key: str
    status: str  # requested | pending | succeeded | failed
    stripe_refund_id: str | None
    reason: str | None
    created_at: datetime
    settled_at: datetime | None

    @classmethod
    def of(cls, row: asyncpg.Record) -> Refund:
        return cls(**dict(row))


# What is left of a top-up ($1) to refund: its amount less the refunds not failed.
LEFT_SQL = ("select t.amount - coalesce((select sum(r.amount) from refunds r where r.topup_id = t.id"
            " and r.status <> 'failed'), 0)::bigint from topups t where t.id = $1")


async def refundable(conn: asyncpg.Connection, *, topup_id: int, account_id: int, currency: str) -> int:
    left: int = await conn.fetchval(LEFT_SQL, topup_id) or 0
    return max(0, min(left, await budgets.balance(conn, account_id=account_id, currency=currency)))


async def request(conn: asyncpg.Connection, *, tenant_id: int, account_id: int, topup_id: int,
                  amount: object | None, idempotency_key: str) -> Refund:
    """A refund request (as the supporter, in the caller's transaction)."""
    row = await conn.fetchrow(f"select {COLUMNS} from refunds where account_id = $1 and idempotency_key = $2",
                              account_id, idempotency_key)
    if row is not None:
        if amount is not None and row["amount"] != amount:
            raise UserError("IDEMPOTENCY_KEY_REUSED", "this idempotencyKey already asked for another amount",
                            "idempotencyKey")
        return Refund.of(row)
    # RLS shows a supporter only their own top-ups: another's is "not found", as a missing one.
    t = await conn.fetchrow("select id, currency, status from topups where id = $1 and account_id = $2",
                            topup_id, account_id)
    if t is None or t["status"] != "succeeded":
        raise UserError("NOT_FOUND", "no paid top-up of yours with this id", "topUpId")
    if await conn.fetchval("select 1 from disputes where topup_id = $1", topup_id):
        raise UserError("DISPUTED", "this payment is disputed: its money is settled by the dispute", "topUpId")
    most = await refundable(conn, topup_id=topup_id, account_id=account_id, currency=t["currency"])
    minor = most if amount is None else parse_amount(amount)
    if minor <= 0 or minor > most:
        raise UserError("INSUFFICIENT_BALANCE", f"at most {Money(most, t['currency'])} of this top-up can be"
                        " refunded now (what is left of it, and unspent)", "amount")
    row = await conn.fetchrow(
        "insert into refunds (tenant_id, account_id, topup_id, amount, currency, idempotency_key)"
        f" values ($1, $2, $3, $4, $5, $6) returning {COLUMNS}",
        tenant_id, account_id, topup_id, minor, t["currency"], idempotency_key)
    return Refund.of(row)


async def send(conn: asyncpg.Connection, *, refund_id: int, stripe: Stripe | None) -> str:
    """Carry out a requested refund (as merci_system); returns its status. Idempotent."""
    async with conn.transaction():
        row = await conn.fetchrow(f"select {COLUMNS} from refunds where id = $1 for update", refund_id)
        if row is None:
            return "missing"
        r = Refund.of(row)
        if r.status == "requested":
            await budgets.lock_balance(conn, account_id=r.account_id)
            if await conn.fetchval("select 1 from disputes where topup_id = $1", r.topup_id):
                return await _fail(conn, r, "the payment is disputed")
            # LEFT_SQL counts this request itself: what is left besides it is left + amount.
            left = (await conn.fetchval(LEFT_SQL, r.topup_id) or 0) + r.amount
            balance = await budgets.balance(conn, account_id=r.account_id, currency=r.currency)
            if r.amount > min(left, balance):
                return await _fail(conn, r, f"only {Money(max(0, min(left, balance)), r.currency)} is refundable now")
            mine = await ledger.account_id(conn, kind="supporter", tenant_id=r.tenant_id, currency=r.currency,
                                           owner_account_id=r.account_id)
            outside = await ledger.account_id(conn, kind="external", tenant_id=r.tenant_id, currency=r.currency)
            journal = await ledger.post(conn, tenant_id=r.tenant_id, kind="refund", idem_key=f"refund:{r.id}",
                                        lines=[(mine, Money(-r.amount, r.currency)),
                                               (outside, Money(r.amount, r.currency))],
                                        memo=f"refund {r.id} of top-up {r.topup_id}")
            await conn.execute("update refunds set status = 'pending', journal_id = $2 where id = $1", r.id, journal)
        elif r.status != "pending" or r.stripe_refund_id is not None:
            return r.status
    if stripe is None:
        async with conn.transaction():
            return await _reverse(conn, r, "card refunds need Stripe (STRIPE_API_KEY)")
    pi = await conn.fetchval("select payment_intent_id from topups where id = $1", r.topup_id)
    try:
        made = await stripe.create_refund({"payment_intent": pi, "amount": r.amount,
                                           "metadata": {"merci_refund_id": str(r.id)}}, key=f"merci-refund-{r.id}")
    except StripeError as err:
        async with conn.transaction():
            return await _reverse(conn, r, err.message)
    async with conn.transaction():
        if made.get("status") in ("failed", "canceled"):
            return await _reverse(conn, r, str(made.get("failure_reason") or made.get("status")))
        status = "succeeded" if made.get("status") == "succeeded" else "pending"
        await conn.execute("update refunds set stripe_refund_id = $2, status = $3,"
                           " settled_at = case when $3 = 'succeeded' then now() end"
                           " where id = $1 and status = 'pending'", r.id, made["id"], status)
    return status


async def updated(conn: asyncpg.Connection, refund: dict[str, Any]) -> str:
    """Stripe's word on a refund later (refund.updated, charge.refund.updated, refund.failed)."""
    mid = (refund.get("metadata") or {}).get("merci_refund_id")
    row = await conn.fetchrow(f"select {COLUMNS} from refunds where stripe_refund_id = $1"
                              " or id = $2::bigint for update", refund.get("id"),
                              int(mid) if isinstance(mid, str) and mid.isdigit() else None)
    if row is None:
        return "no such refund"
    r = Refund.of(row)
    status = refund.get("status")
    if status in ("failed", "canceled") and r.status in ("pending", "succeeded"):
        return await _reverse(conn, r, str(refund.get("failure_reason") or status))
    if status == "succeeded" and r.status == "pending":
        await conn.execute("update refunds set status = 'succeeded', settled_at = now(),"
                           " stripe_refund_id = coalesce(stripe_refund_id, $2) where id = $1", r.id, refund.get("id"))
        return "refund succeeded"
    return f"refund {r.status}"


async def _fail(conn: asyncpg.Connection, r: Refund, reason: str) -> str:
    await conn.execute("update refunds set status = 'failed', reason = $2, settled_at = now() where id = $1",
                       r.id, reason[:500])
    return "failed"


async def _reverse(conn: asyncpg.Connection, r: Refund, reason: str) -> str:
    """The refund's money back in the balance: Stripe did not send it."""
    mine = await ledger.account_id(conn, kind="supporter", tenant_id=r.tenant_id, currency=r.currency,
                                   owner_account_id=r.account_id)
    outside = await ledger.account_id(conn, kind="external", tenant_id=r.tenant_id, currency=r.currency)
    journal = await ledger.post(conn, tenant_id=r.tenant_id, kind="refund_reversal", idem_key=f"refund_reversal:{r.id}",
                                lines=[(outside, Money(-r.amount, r.currency)), (mine, Money(r.amount, r.currency))],
                                memo=f"refund {r.id} refused: {reason[:200]}")
    await conn.execute("update refunds set status = 'failed', reason = $2, reversal_journal_id ="
                       " coalesce(reversal_journal_id, $3), settled_at = now() where id = $1",
                       r.id, reason[:500], journal)
    return "failed"


async def pending(conn: asyncpg.Connection) -> list[int]:
    """Refunds not yet sent to Stripe (a lost message, a dead worker): the scheduler's."""
    return [r["id"] for r in await conn.fetch(
        "select id from refunds where (status = 'requested' or (status = 'pending' and stripe_refund_id is null))"
        " and created_at < now() - interval '5 minutes' order by id limit 1000")]


def of_account(*, account_id: int) -> Keyset:
    """A supporter's refunds, newest first (RLS shows only one's own)."""
    return Keyset(f"select {COLUMNS} from refunds where account_id = $1", (account_id,))


async def frozen(conn: asyncpg.Connection, *, account_id: int, currency: str) -> int:
    """What open disputes hold of a supporter's money."""
    return await ledger.owner_balance(conn, kind="frozen", owner_account_id=account_id, currency=currency)
