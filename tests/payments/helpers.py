"""What the payment tests share besides fixtures: the audit, the ledger's view of one
supporter, and GraphQL operations."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from merci import audit, config, ledger
from merci.money import Money
from tests.conftest import GraphQLClient, system_fetch, unique

START = """mutation($input: StartTopUpInput!) { startTopUp(input: $input) {
  checkoutUrl topUp { id status amount { amount } checkoutUrl fee { amount } } userErrors { field code message } } }"""
ME = """{ me { balance { amount } frozen { amount }
  topUps(first: 10) { edges { node { id status amount { amount } fee { amount } } } }
  refunds(first: 10) { edges { node { id status amount { amount } reason } } } } }"""
REFUND = """mutation($input: RequestRefundInput!) { requestRefund(input: $input) {
  refund { id status amount { amount } } userErrors { field code message } } }"""


def system_dsn(database_url: str) -> str:
    return config.Settings(database_url=database_url).derived().system_database_url


async def _audit(database_url: str) -> list[str]:
    conn = await asyncpg.connect(system_dsn(database_url))
    try:
        return [str(v) for v in await audit.audit(conn)]
    finally:
        await conn.close()


def audited(database_url: str) -> None:
    """`merci audit` passes: every check, the new kinds' included."""
    assert asyncio.run(_audit(database_url)) == []


def kinds(database_url: str, account_id: int) -> dict[str, int]:
    """What one account holds per ledger kind."""
    rows = system_fetch(database_url, "select la.kind, sum(e.amount)::bigint as amount from entries e"
                        " join ledger_accounts la on la.id = e.ledger_account_id where la.owner_account_id = $1"
                        " group by 1", account_id)
    return {r["kind"]: r["amount"] for r in rows}


def journals(database_url: str, like: str) -> list[str]:
    return [r["idem_key"] for r in system_fetch(database_url, "select idem_key from journals where idem_key like $1"
                                                " order by id", like)]


async def _spend(database_url: str, account_id: int, amount: int) -> None:
    """Spend part of a balance, as a month close charges it (the supporter → the platform)."""
    conn = await asyncpg.connect(system_dsn(database_url))
    try:
        async with conn.transaction():
            tenant = await conn.fetchval("select tenant_id from accounts where id = $1", account_id)
            mine = await ledger.account_id(conn, kind="supporter", tenant_id=tenant, currency="EUR",
                                           owner_account_id=account_id)
            fee = await ledger.account_id(conn, kind="platform_fee", tenant_id=tenant, currency="EUR")
            await ledger.post(conn, tenant_id=tenant, kind="correction", idem_key=unique("spent:"),
                              lines=[(mine, Money(-amount, "EUR")), (fee, Money(amount, "EUR"))])
    finally:
        await conn.close()


def spend(database_url: str, account_id: int, amount: int) -> None:
    asyncio.run(_spend(database_url, account_id, amount))


def start(client: GraphQLClient, amount: Any, key: str | None = None) -> dict[str, Any]:
    return client(START, {"input": {"amount": amount, "idempotencyKey": key or unique("t")}})["startTopUp"]  # type: ignore[no-any-return]


def session_of(checkout_url: str) -> str:
    return checkout_url.rstrip("/").rsplit("/", 1)[1]
