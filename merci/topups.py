"""Card top-ups through Stripe Checkout.

- `start` (the API, as the supporter): a `topups` row for the amount (bounds per top-up,
  and per month for new accounts), then a Checkout Session keyed on the row's id
  (`merci-topup-<id>`): a retry with the same idempotencyKey finds the row, and Stripe
  answers the same key with the same session. Nothing is credited here.
- `credit` (a worker, as merci_system, on Stripe's signed `checkout.session.completed` or
  `payment_intent.succeeded`, whichever comes first, as often as it comes): the `topup`
  journal (the outside world → the balance), keyed on the row, so once; then the fee
  Stripe kept, as what it is: a `provider_fee` journal from the platform's own pocket
  (`platform_cost`) to the provider. The supporter is credited what they paid.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from merci import ledger, locks
from merci.config import Settings
from merci.errors import UserError
from merci.money import Money, parse_amount
from merci.paging import Keyset
from merci.stripe_api import Stripe

COLUMNS = ("id, tenant_id, account_id, amount, currency, provider, idempotency_key, status, checkout_session_id,"
           " checkout_url, payment_intent_id, fee, reason, created_at, settled_at")

MAX_KEY = 100


@dataclass(frozen=True)
class TopUp:
    id: int
    tenant_id: int
    account_id: int
    amount: int
    currency: str
    provider: str
    idempotency_key: str
    status: str  # created | open | succeeded | failed | expired
    checkout_session_id: str | None
    checkout_url: str | None
    payment_intent_id: str | None
    fee: int | None
    reason: str | None
    created_at: datetime
    settled_at: datetime | None

    @classmethod
    def of(cls, row: asyncpg.Record) -> TopUp:
        return cls(**dict(row))


def check_amount(amount: object, settings: Settings) -> int:
    minor = parse_amount(amount, minimum=settings.topup_min)
    if minor > settings.topup_max:
        raise UserError("AMOUNT_TOO_LARGE", f"a top-up is at most {Money(settings.topup_max, settings.currency)}",
                        "amount")
    return minor


def check_key(key: object) -> str:
    if not isinstance(key, str) or not key.strip() or len(key.strip()) > MAX_KEY:
        raise UserError("INVALID_IDEMPOTENCY_KEY", f"idempotencyKey: 1 to {MAX_KEY} characters, one key per top-up",
                        "idempotencyKey")
    return key.strip()


async def create(conn: asyncpg.Connection, settings: Settings, *, tenant_id: int, account_id: int, amount: int,
                 idempotency_key: str, now: datetime | None = None) -> TopUp:
    """The top-up row (as the supporter, in the caller's transaction); the same key gives
    back the same row. A new account's month is bounded: what it started this month
    (open or paid) and this one together."""
    now = now or datetime.now(UTC)
    await conn.execute("select pg_advisory_xact_lock(hashtextextended($1::text || $2::bigint, 0))",
                       locks.TOPUP_PREFIX, account_id)
    row = await conn.fetchrow(f"select {COLUMNS} from topups where account_id = $1 and idempotency_key = $2",
                              account_id, idempotency_key)
    if row is not None:
        if row["amount"] != amount:
            raise UserError("IDEMPOTENCY_KEY_REUSED", "this idempotencyKey already started another amount",
                            "idempotencyKey")
        return TopUp.of(row)
    born = await conn.fetchval("select created_at from accounts where id = $1", account_id)
    if born is not None and now - born < timedelta(days=settings.topup_new_account_days):
        month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        started = await conn.fetchval(
            "select coalesce(sum(amount), 0)::bigint from topups where account_id = $1 and created_at >= $2"
            " and status in ('created', 'open', 'succeeded')", account_id, month)
        limit = settings.topup_new_account_monthly
        if started + amount > limit:
            left = Money(max(limit - started, 0), settings.currency)
            raise UserError("MONTHLY_LIMIT", f"a new account tops up at most {Money(limit, settings.currency)}"
                            f" a month; {left} is left this month", "amount")
    row = await conn.fetchrow(
        "insert into topups (tenant_id, account_id, amount, currency, provider, idempotency_key)"
        f" values ($1, $2, $3, $4, 'stripe', $5) returning {COLUMNS}",
        tenant_id, account_id, amount, settings.currency, idempotency_key)
    return TopUp.of(row)


def session_params(t: TopUp, *, success_url: str, cancel_url: str) -> dict[str, Any]:
    meta = {"merci_topup_id": str(t.id), "merci_account_id": str(t.account_id)}
    return {
        "mode": "payment",
        "line_items": [{"quantity": 1, "price_data": {
            "currency": t.currency.lower(), "unit_amount": t.amount,
            "product_data": {"name": "Merci balance top-up"}}}],
        "client_reference_id": str(t.id),
        "metadata": meta,
        "payment_intent_data": {"metadata": meta},
        "success_url": success_url,
        "cancel_url": cancel_url,
    }


async def open_session(stripe: Stripe, t: TopUp, *, success_url: str, cancel_url: str) -> dict[str, Any]:
    """The Checkout Session of a top-up: keyed on its row, one however often asked."""
    return await stripe.create_checkout_session(session_params(t, success_url=success_url, cancel_url=cancel_url),
                                                key=f"merci-topup-{t.id}")


async def record_session(conn: asyncpg.Connection, *, topup_id: int, session: dict[str, Any]) -> TopUp:
    row = await conn.fetchrow(
        "update topups set checkout_session_id = $2, checkout_url = $3, status = 'open'"
        f" where id = $1 and status = 'created' returning {COLUMNS}", topup_id, session["id"], session["url"])
    if row is None:  # recorded by a concurrent retry, or already paid
        row = await conn.fetchrow(f"select {COLUMNS} from topups where id = $1", topup_id)
    return TopUp.of(row)


async def by_id(conn: asyncpg.Connection, topup_id: int) -> TopUp | None:
    row = await conn.fetchrow(f"select {COLUMNS} from topups where id = $1", topup_id)
    return None if row is None else TopUp.of(row)


async def credit(conn: asyncpg.Connection, *, topup_id: int, amount: int, currency: str,
                 payment_intent: str | None, session_id: str | None) -> str:
    """Credit a paid top-up (as merci_system, in the caller's transaction): once, for
    the amount of the row, and only when what Stripe says was paid is that amount. Returns
    what happened (for the event's log)."""
    row = await conn.fetchrow(f"select {COLUMNS} from topups where id = $1 for update", topup_id)
    if row is None:
        return "no such top-up"
    t = TopUp.of(row)
    if t.status == "succeeded":
        return "already credited"
    if session_id is not None and t.checkout_session_id not in (None, session_id):
        return f"session {session_id} is not this top-up's"
    if payment_intent is not None and t.payment_intent_id not in (None, payment_intent):
        return f"payment {payment_intent} is not this top-up's"
    if amount != t.amount or currency.upper() != t.currency:
        return f"paid {amount} {currency}, not {t.amount} {t.currency}: not credited"
    credited: bool = await conn.fetchval(
        "select merci_credit_topup($1, $2, $3, $4, $5, $6)", t.tenant_id, t.account_id, t.amount, t.currency,
        "stripe", str(t.id))
    journal = await conn.fetchval("select id from journals where idem_key = $1", f"topup:stripe:{t.id}")
    await conn.execute(
        "update topups set status = 'succeeded', journal_id = $2, settled_at = now(),"
        " payment_intent_id = coalesce(payment_intent_id, $3), checkout_session_id = coalesce(checkout_session_id, $4)"
        " where id = $1", t.id, journal, payment_intent, session_id)
    return "credited" if credited else "credited before"


async def record_fee(conn: asyncpg.Connection, *, topup_id: int, fee: int) -> bool:
    """The fee Stripe kept on a credited top-up: the platform pays it (platform_cost →
    provider_fee), once. The supporter keeps all they paid."""
    t = await by_id(conn, topup_id)
    if t is None or t.status != "succeeded" or fee <= 0:
        return False
    cost = await ledger.account_id(conn, kind="platform_cost", tenant_id=t.tenant_id, currency=t.currency)
    kept = await ledger.account_id(conn, kind="provider_fee", tenant_id=t.tenant_id, currency=t.currency)
    posted = await ledger.post(conn, tenant_id=t.tenant_id, kind="provider_fee", idem_key=f"fee:topup:{t.id}",
                               lines=[(cost, Money(-fee, t.currency)), (kept, Money(fee, t.currency))],
                               memo=f"Stripe's fee on top-up {t.id}")
    if posted is not None:
        await conn.execute("update topups set fee = $2 where id = $1", t.id, fee)
    return posted is not None


async def fail(conn: asyncpg.Connection, *, topup_id: int, status: str, reason: str) -> str:
    """A payment that failed or a session that expired: nothing credited; a late success
    still wins (status moves only from created/open)."""
    done = await conn.execute("update topups set status = $2, reason = $3, settled_at = now()"
                              " where id = $1 and status in ('created', 'open')", topup_id, status, reason[:500])
    return status if done.endswith("1") else "left as it was"


def fee_of(payment_intent: dict[str, Any]) -> int | None:
    """Stripe's fee on a payment: its latest charge's balance transaction (expanded)."""
    charge = payment_intent.get("latest_charge")
    if not isinstance(charge, dict):
        return None
    bt = charge.get("balance_transaction")
    if not isinstance(bt, dict) or not isinstance(bt.get("fee"), int):
        return None
    return int(bt["fee"])


def of_account(*, account_id: int) -> Keyset:
    """A supporter's card top-ups, newest first (RLS shows only one's own)."""
    return Keyset(f"select {COLUMNS} from topups where account_id = $1", (account_id,))
