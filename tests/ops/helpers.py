"""Shared by the operations tests: scraping metrics, waiting, ledger snapshots."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from merci import config
from tests.conftest import Service, service_env

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    r = httpx.get(url, timeout=10)
    assert r.status_code == 200, r.text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 when the series does not exist (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"timed out: {what}")


async def _fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(config.with_user(dsn, config.SYSTEM_ROLE))
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    return asyncio.run(_fetch(dsn, sql, *args))


def scalar(dsn: str, sql: str, *args: object) -> Any:
    return fetch(dsn, sql, *args)[0][0]


def ledger(dsn: str) -> list[tuple[object, ...]]:
    """Every entry by its natural keys (as tests/workers/test_faults.py compares them)."""
    return [tuple(r) for r in fetch(dsn, """
        select j.idem_key, la.kind, la.owner_account_id, la.thing_id, e.amount, e.thing_id
          from journals j join entries e on e.journal_id = j.id join ledger_accounts la on la.id = e.ledger_account_id
         order by 1, 2, 3, 4, 5, 6""")]


def merci(database_url: str, log: Path, *args: str, **env: str) -> Service:
    """A `merci …` command as a service (stopped by PID at teardown)."""
    return Service([sys.executable, "-m", "merci.cli", *args], service_env(database_url, **env), log)
