"""Disputes (chargebacks) on a top-up's payment, from Stripe's signed events.

Opened: what is still unspent of the disputed amount is frozen, min(disputed, balance),
out of the supporter's balance into their `frozen` account (`dispute_freeze`): they can
no longer spend or refund it, and nothing already distributed is touched.
Won (or a warning closed): the frozen amount goes back to the balance (`dispute_won`).
Lost: the card holder gets the disputed amount back (→ `external`): the frozen part
from the frozen account, the rest (what the supporter had already spent, now in
creators' hands) from the platform's own pocket (`platform_cost`), a visible loss
(`dispute_lost`). Each journal is keyed on the dispute, so an event's redelivery, or a
`closed` that arrives before its `created`, posts each once.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from merci import budgets, ledger
from merci.money import Money


class NotYet(Exception):
    """The event names a payment Merci has not recorded yet (its success event is still to
    come): the event is tried again later."""


async def _frozen_account(conn: asyncpg.Connection, tenant: int, currency: str, owner: int) -> int:
    return await ledger.account_id(conn, kind="frozen", tenant_id=tenant, currency=currency, owner_account_id=owner)


async def opened(conn: asyncpg.Connection, dispute: dict[str, Any]) -> str:
    """Record the dispute and freeze (as merci_system, in the caller's transaction)."""
    pi = dispute.get("payment_intent")
    topup = await conn.fetchrow("select id, tenant_id, account_id, currency, status from topups"
                                " where payment_intent_id = $1", pi)
    if topup is None or topup["status"] != "succeeded":
        raise NotYet(f"no credited top-up for payment {pi}")
    found = await conn.fetchrow("select id, status from disputes where id = $1", dispute["id"])
    if found is not None:
        return f"dispute {dispute['id']} known ({found['status']})"
    amount, currency = int(dispute["amount"]), str(dispute["currency"]).upper()
    if currency != topup["currency"] or amount <= 0:
        return f"dispute in {currency} of {amount}: not for this top-up"
    owner, tenant = topup["account_id"], topup["tenant_id"]
    await budgets.lock_balance(conn, account_id=owner)
    balance = await budgets.balance(conn, account_id=owner, currency=currency)
    frozen = max(0, min(amount, balance))
    journal = None
    if frozen:
        mine = await ledger.account_id(conn, kind="supporter", tenant_id=tenant, currency=currency,
                                       owner_account_id=owner)
        journal = await ledger.post(
            conn, tenant_id=tenant, kind="dispute_freeze", idem_key=f"dispute:{dispute['id']}:freeze",
            lines=[(mine, Money(-frozen, currency)),
                   (await _frozen_account(conn, tenant, currency, owner), Money(frozen, currency))],
            memo=f"dispute {dispute['id']} on top-up {topup['id']}")
    await conn.execute(
        "insert into disputes (id, tenant_id, account_id, topup_id, amount, currency, frozen, freeze_journal_id)"
        " values ($1, $2, $3, $4, $5, $6, $7, $8)", dispute["id"], tenant, owner, topup["id"], amount, currency,
        frozen, journal)
    return f"dispute opened, {frozen} frozen"


async def closed(conn: asyncpg.Connection, dispute: dict[str, Any]) -> str:
    """Settle the dispute: won, the frozen amount back; lost, the money to the card holder."""
    status = str(dispute.get("status"))
    if status not in ("won", "lost", "warning_closed"):
        return f"dispute {status}: nothing to settle"
    await opened(conn, dispute)  # a `closed` before its `created`: open it first
    d = await conn.fetchrow("select * from disputes where id = $1 for update", dispute["id"])
    if d["status"] != "open":
        return f"dispute already {d['status']}"
    tenant, owner, currency, frozen = d["tenant_id"], d["account_id"], d["currency"], d["frozen"]
    held = await _frozen_account(conn, tenant, currency, owner)
    if status == "lost":
        cost = await ledger.account_id(conn, kind="platform_cost", tenant_id=tenant, currency=currency)
        outside = await ledger.account_id(conn, kind="external", tenant_id=tenant, currency=currency)
        lines = [(held, Money(-frozen, currency))] if frozen else []
        if d["amount"] > frozen:
            lines.append((cost, Money(-(d["amount"] - frozen), currency)))
        lines.append((outside, Money(d["amount"], currency)))
        journal = await ledger.post(conn, tenant_id=tenant, kind="dispute_lost", idem_key=f"dispute:{d['id']}:lost",
                                    lines=lines, memo=f"dispute {d['id']} lost: the platform pays "
                                    f"{Money(d['amount'] - frozen, currency)}")
        final = "lost"
    else:
        journal = None
        if frozen:
            mine = await ledger.account_id(conn, kind="supporter", tenant_id=tenant, currency=currency,
                                           owner_account_id=owner)
            journal = await ledger.post(conn, tenant_id=tenant, kind="dispute_won", idem_key=f"dispute:{d['id']}:won",
                                        lines=[(held, Money(-frozen, currency)), (mine, Money(frozen, currency))],
                                        memo=f"dispute {d['id']} won")
        final = "won"
    await conn.execute("update disputes set status = $2, close_journal_id = $3, closed_at = now() where id = $1",
                       d["id"], final, journal)
    return f"dispute {final}"
