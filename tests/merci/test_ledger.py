"""merci.ledger: one balance query, wherever a balance is read."""

from __future__ import annotations

import re

import asyncpg
import pytest

from merci import budgets, buttons, clicks, escrow, ledger, payouts, split


def words(sql: str) -> str:
    return re.sub(r"\s+", " ", sql).strip()


@pytest.mark.asyncio
async def test_the_partner_precheck_runs_the_owner_balance(system_pool: asyncpg.Pool) -> None:
    """Migration 0015's function cannot import Python: it writes the query out, as is."""
    source = await system_pool.fetchval("select prosrc from pg_proc where proname = 'merci_partner_precheck'")
    assert words(ledger.supporter_balances_sql(supporters="select supporter_id from linked",
                                               currency="p_currency")) in words(source)


def test_the_statements_that_read_balances_run_it() -> None:
    assert words(ledger.supporter_balances_sql(supporters="select supporter_id from input", currency="$6")) \
        in words(clicks.PRECHECK_SQL)
    assert words(ledger.owner_balance_sql(owner="s.supporter_id", currency="$3::text", with_account=True)) \
        in words(split.SPLIT_SQL)
    assert words(ledger.OWNER_BALANCE_SQL) in words(payouts.AVAILABLE_SQL)
    assert words(ledger.account_balance_sql("la.id")) in words(escrow.STRANDED_SQL)
    assert words(budgets.month_budget_sql(account="s.supporter_id", period="$1::date")) in words(split.SPLIT_SQL)
    assert words(ledger.owner_balance_sql(owner="$1", currency="$5")) in words(buttons.STATE_SQL)
