"""The double-entry ledger: accounts, append-only journals, balances as sums."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import asyncpg

from merci.money import Money

# Kinds whose balance may go negative: the outside world's side of a movement, and the
# platform's own pocket (platform_cost: the providers' fees and lost disputes it paid).
OUTSIDE_KINDS = frozenset({"external", "payout", "provider_fee", "platform_cost"})


async def account_id(
    conn: asyncpg.Connection, *, kind: str, tenant_id: int, currency: str,
    owner_account_id: int | None = None, thing_id: int | None = None,
) -> int:
    """Get or create a ledger account; the unique key makes concurrent calls agree."""
    select = (
        "select id from ledger_accounts where kind = $1 and tenant_id = $2 and currency = $3"
        " and owner_account_id is not distinct from $4 and thing_id is not distinct from $5"
    )
    args = (kind, tenant_id, currency, owner_account_id, thing_id)
    found: int | None = await conn.fetchval(select, *args)
    if found is None:
        # The ledger is append-only for the API role too: no upsert, insert-or-read.
        found = await conn.fetchval(
            "insert into ledger_accounts (kind, tenant_id, currency, owner_account_id, thing_id)"
            " values ($1, $2, $3, $4, $5) on conflict do nothing returning id",
            *args,
        ) or await conn.fetchval(select, *args)
    assert found is not None
    return found


async def post(
    conn: asyncpg.Connection, *, tenant_id: int, kind: str, idem_key: str,
    lines: Sequence[tuple[int, Money]], period: date | None = None, memo: str = "",
) -> int | None:
    """Post one balanced journal; returns its id, or None if `idem_key` was already posted.

    All entries go in one INSERT: the balance trigger checks per statement.
    """
    total = sum(m.minor for _, m in lines)
    currencies = {m.currency for _, m in lines}
    if total != 0 or len(currencies) != 1:
        raise ValueError(f"unbalanced journal {idem_key}: sum {total}, currencies {currencies}")
    journal_id: int | None = await conn.fetchval(
        "insert into journals (tenant_id, kind, idem_key, period, memo) values ($1, $2, $3, $4, $5)"
        " on conflict (idem_key) do nothing returning id",
        tenant_id, kind, idem_key, period, memo,
    )
    if journal_id is None:
        return None
    await conn.execute(
        "insert into entries (journal_id, ledger_account_id, tenant_id, amount, currency, journal_tenant_id)"
        " select $1, la.id, la.tenant_id, x.amount, x.currency, $5"
        "   from unnest($2::bigint[], $3::bigint[], $4::text[]) as x(account, amount, currency)"
        "   join ledger_accounts la on la.id = x.account",
        journal_id, [a for a, _ in lines], [m.minor for _, m in lines], [m.currency for _, m in lines], tenant_id,
    )
    return journal_id


# Balances are sums of entries, never stored: what an owner holds is the sum of the
# entries of its ledger accounts of one kind and currency. Every balance Merci reads is
# one of the statements below, built on that one definition; statements that need
# balances inline (the close's split, the click prechecks, the button) embed them rather
# than write their own. Their arguments are SQL expressions: $n parameters, or columns of
# the statement around them. The partner precheck (a SQL function of migration 0015)
# writes supporter_balances_sql out, as is (tests/merci/test_ledger.py holds it to it).


def _accounts(kind: str, currency: str) -> str:
    return ("from ledger_accounts la left join entries e on e.ledger_account_id = la.id"
            f" where la.kind = {kind} and la.currency = {currency}")


def owner_balance_sql(*, owner: str, currency: str, kind: str = "'supporter'", with_account: bool = False) -> str:
    """SQL: what `owner` holds in its ledger accounts of `kind` and `currency` (`balance`),
    and with_account: the first of those accounts (`ledger_account`; null: none)."""
    account = ", min(la.id) as ledger_account" if with_account else ""
    return (f"select coalesce(sum(e.amount), 0)::bigint as balance{account} {_accounts(kind, currency)}"
            f" and la.owner_account_id = {owner}")


def supporter_balances_sql(*, supporters: str, currency: str) -> str:
    """SQL: the balance of each supporter the subquery `supporters` names (`supporter_id`,
    `balance`), one grouped scan: a batch of clicks checks its supporters' at once. A
    supporter without an account has no row (a balance of 0)."""
    accounts = _accounts("'supporter'", currency)
    return ("select la.owner_account_id as supporter_id, coalesce(sum(e.amount), 0)::bigint as balance"
            f" {accounts} and la.owner_account_id in ({supporters}) group by la.owner_account_id")


def account_balance_sql(account: str) -> str:
    """SQL: the balance of one ledger account."""
    return f"select coalesce(sum(e.amount), 0)::bigint from entries e where e.ledger_account_id = {account}"


# One owner's balance of one kind: $1 kind, $2 owner account, $3 currency (a subquery too).
OWNER_BALANCE_SQL = owner_balance_sql(owner="$2", currency="$3", kind="$1")


async def owner_balance(
    conn: asyncpg.Connection, *, kind: str, owner_account_id: int, currency: str
) -> int:
    value: int = await conn.fetchval(OWNER_BALANCE_SQL, kind, owner_account_id, currency)
    return value
