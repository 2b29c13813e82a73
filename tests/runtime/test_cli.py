"""`merci close-month --previous`: the month before the current one (the CronJob's command)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import asyncpg
import pytest

from merci.periods import months_before, period_of
from runtime.cli import parser
from runtime.synthetic import seed_month
from tests.conftest import ROOT, migrated_database, service_env
from tests.processes import scalar


def test_previous_and_period_are_exclusive() -> None:
    args = parser().parse_args(["close-month", "--previous"])
    assert args.previous and args.period is None
    args = parser().parse_args(["close-month", "2025-01", "--shards", "4"])
    assert not args.previous and args.period == "2025-01"
    for argv in (["close-month"], ["close-month", "2025-01", "--previous"]):
        with pytest.raises(SystemExit) as exited:
            parser().parse_args(argv)
        assert exited.value.code == 2


@pytest.fixture
def fresh_db(server_url: str) -> Iterator[str]:
    with migrated_database(server_url, "merci_ops_cli") as dsn:
        yield dsn


def test_close_month_previous_closes_last_month(fresh_db: str) -> None:
    previous = months_before(period_of(datetime.now(UTC)), 1)

    async def seed() -> None:
        conn = await asyncpg.connect(fresh_db)
        try:
            await seed_month(conn, period=previous, supporters=20, things=11, clicks_per_supporter=3)
        finally:
            await conn.close()

    asyncio.run(seed())
    out = subprocess.run([sys.executable, "-m", "runtime.cli", "close-month", "--previous", "--inline"],
                         env=service_env(fresh_db), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"closed {previous:%Y-%m}" in out.stdout
    assert scalar(fresh_db, "select status from month_closes where period = $1", previous) == "done"
    assert scalar(fresh_db, "select count(*) from journals where kind = 'month_close'") == 20
