"""`merci audit` names a violation; the scheduler sends what is due, once due."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime

import asyncpg
import pytest
from dramatiq.brokers.stub import StubBroker

from merci import ledger, scheduler
from merci.config import Settings
from merci.money import Money
from merci.queue import Queue
from tests import factories as f
from tests.conftest import ROOT, migrated_database, service_env


@pytest.fixture
def fresh(server_url: str) -> Iterator[str]:
    with migrated_database(server_url, "merci_audit") as dsn:
        yield dsn


def audit(dsn: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runtime.cli", "audit"], env=service_env(dsn), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_audit_passes_then_names_a_negative_balance(fresh: str) -> None:
    async def overdraw() -> None:
        conn = await asyncpg.connect(Settings(database_url=fresh).derived().system_database_url)
        try:
            tenant = await f.merci_tenant(conn)
            fan = await f.supporter(conn, tenant, budget=500, funds=300)
            owner = await f.person(conn, tenant, "c")
            async with conn.transaction():
                src = await ledger.account_id(conn, kind="supporter", tenant_id=tenant, currency="EUR",
                                              owner_account_id=fan)
                dst = await ledger.account_id(conn, kind="creator", tenant_id=tenant, currency="EUR",
                                              owner_account_id=owner)
                # Balanced, so the database takes it; but it overdraws the supporter.
                await ledger.post(conn, tenant_id=tenant, kind="correction", idem_key="overdraw",
                                  lines=[(src, Money(-1000, "EUR")), (dst, Money(1000, "EUR"))])
        finally:
            await conn.close()

    ok = audit(fresh)
    assert ok.returncode == 0, ok.stderr
    assert "checks passed" in ok.stdout
    asyncio.run(overdraw())
    bad = audit(fresh)
    assert bad.returncode == 1
    assert "no_negative_balance" in bad.stderr and "balance=-700" in bad.stderr


def test_scheduler_closes_last_month_after_the_grace_period(fresh: str) -> None:
    async def run() -> None:
        settings = Settings(database_url=fresh, close_grace_seconds=3600).derived()
        conn = await asyncpg.connect(settings.system_database_url)
        broker = StubBroker()
        queue = Queue(broker)
        try:
            tenant = await f.merci_tenant(conn)
            fan = await f.supporter(conn, tenant, budget=500, funds=1000)
            thing = await f.thing(conn, tenant, await f.person(conn, tenant, "c"))
            await f.click(conn, tenant, fan, thing, "2031-04-20T10:00:00Z")

            def sent() -> list[str]:
                from dramatiq import Message

                return [Message.decode(m).actor_name for q in broker.queues for m in broker.queues[q].queue]

            early = await scheduler.tick(conn, settings, queue, datetime(2031, 5, 1, 0, 30, tzinfo=UTC))
            assert not any(s.startswith("money.close_month") for s in early)
            due = await scheduler.tick(conn, settings, queue, datetime(2031, 5, 1, 1, 30, tzinfo=UTC))
            assert "money.close_month 2031-04" in due
            assert "money.close_month" in sent()
            await conn.execute("insert into month_closes (period, shards, bounds, currency, default_budget, status)"
                               " values ($1, 1, array[0]::bigint[], 'EUR', 500, 'done')", date(2031, 4, 1))
            later = await scheduler.tick(conn, settings, queue, datetime(2031, 5, 1, 2, 30, tzinfo=UTC))
            assert not any(s.startswith("money.close_month") for s in later)
        finally:
            await conn.close()

    asyncio.run(run())
