"""An account's own data: its export, and its deletion.

Deletion keeps the money's history whole: the ledger is append-only and every journal
balances, so the entries an account's clicks, top-ups and payouts made stay as they are,
under an account that no longer says whose it was (merci_delete_account, migration 0022:
email, handle, display name and password replaced; sessions, partner links, embed
grants revoked; subscriptions cancelled; sites unlisted; unsent mail dropped). What its
balance or earnings still hold stays on its ledger accounts, which no one can spend
again: `forfeit` must say so when there is any. This month's clicks are still split at
the close like anyone's (they were made), capped by the balance as always.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import asyncpg

from merci import account_mail, accounts, budgets, mail
from merci.errors import UserError
from merci.money import Money

EXPORT_FORMAT = "merci.account-export/1"
MAX_ROWS = 100_000  # per section: an export is one document, not a stream


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


async def _rows(conn: asyncpg.Connection, sql: str, *args: Any) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in r.items()} for r in await conn.fetch(sql, *args, MAX_ROWS)]


async def export(conn: asyncpg.Connection, *, account_id: int) -> dict[str, Any]:
    """Everything Merci keeps about the account, as one JSON-ready document (the caller's
    own transaction: RLS shows it its tenant's rows, which hold all of its own)."""
    profile = await accounts.own_account(conn, account_id=account_id)
    if profile is None:
        raise UserError("NOT_FOUND", "no such account", None)
    return {
        "format": EXPORT_FORMAT,
        "profile": _plain(profile),
        "budgetChanges": await _rows(conn, "select amount, currency, created_at from budget_changes"
                                           " where account_id = $1 order by id limit $2", account_id),
        "clicks": await _rows(conn, "select c.id, c.thing_id, t.url, c.period, c.accepted_at, c.source,"
                                    " c.subscription_id from clicks c join things t on t.id = c.thing_id"
                                    " where c.supporter_id = $1 order by c.id limit $2", account_id),
        "subscriptions": await _rows(conn, "select id, thing_id, months, months_used, start_period, status,"
                                           " created_at, updated_at from subscriptions where supporter_id = $1"
                                           " order by id limit $2", account_id),
        "ledgerEntries": await _rows(conn, "select e.id, la.kind as account, e.amount, e.currency, j.kind,"
                                           " j.period, j.memo, j.created_at, e.thing_id"
                                           " from ledger_accounts la join entries e on e.ledger_account_id = la.id"
                                           " join journals j on j.id = e.journal_id"
                                           " where la.owner_account_id = $1 order by e.id limit $2", account_id),
        "payouts": await _rows(conn, "select id, amount, currency, provider, status, reference, reason,"
                                     " created_at, settled_at from payouts where account_id = $1"
                                     " order by id limit $2", account_id),
        "sites": await _rows(conn, "select id, url, verified_at, verification_method, listed, title, description,"
                                   " language, category, tags, created_at from sites where owner_id = $1"
                                   " order by id limit $2", account_id),
        "things": await _rows(conn, "select id, url, title, description, category, language, tags, hidden,"
                                    " created_at, claimed_at from things where owner_id = $1"
                                    " order by id limit $2", account_id),
        "linkedPartners": await _rows(conn, "select tenant_id, scopes, created_at, revoked_at from linked_accounts"
                                            " where account_id = $1 order by id limit $2", account_id),
    }


async def left_over(conn: asyncpg.Connection, *, account_id: int, currency: str) -> Money:
    """What deletion would leave unspendable: the balance and the earnings."""
    balance = await budgets.balance(conn, account_id=account_id, currency=currency)
    earnings = await budgets.earnings(conn, account_id=account_id, currency=currency)
    return Money(max(balance, 0) + max(earnings, 0), currency)


async def delete(conn: asyncpg.Connection, *, tenant_id: int, account_id: int, currency: str, forfeit: bool,
                 lang: str) -> int:
    """Delete the caller's account (the transaction's); the password was checked before.
    BALANCE_NOT_EMPTY unless `forfeit` when money would be left. Returns the notice's
    mail id (written after the deletion: nothing ties it to the account any more)."""
    row = await accounts.own_account(conn, account_id=account_id)
    if row is None:
        raise UserError("NOT_FOUND", "no such account", None)
    left = await left_over(conn, account_id=account_id, currency=currency)
    if left.minor > 0 and not forfeit:
        raise UserError("BALANCE_NOT_EMPTY",
                        f"{left.format()} would be left on this account and lost: ask for a payout "
                        "first, or confirm with forfeitBalance", "forfeitBalance")
    if not await conn.fetchval("select merci_delete_account()"):
        raise UserError("NOT_FOUND", "no such account", None)
    return await mail.queue(conn, tenant_id=tenant_id, account_id=None, mail=account_mail.compose(
        "account_deleted", lang=lang, recipient=str(row["email"]), name=str(row["display_name"] or row["handle"])))
