"""Accepted means durable in PostgreSQL, whatever the broker (issue 17): with real
processes, a Redis of the test's own that keeps nothing (no AOF, no snapshots) is killed
with accepted clicks queued and comes back empty; every click answered PENDING is
stored exactly once, re-sent from the outbox by the scheduler. A click into a month
whose close has started is refused at once. In production, such a Redis stops
`merci serve` and `merci worker` at start.

The machine's shared Redis is never touched: each test starts `redis-server` on a free
port and kills it by PID."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from merci.queue import durability_problem
from tests.conftest import (
    ROOT,
    GraphQLClient,
    free_port,
    migrated_database,
    service_env,
    sign_up,
    start_api,
    start_worker,
    system_fetch,
    system_scalar,
    wait_for,
)
from tests.processes import PrivateRedis, merci

FLATTR = """mutation($input: FlattrInput!) { flattr(input: $input) { click { status } userErrors { code } } }"""
RECEIPT = """query($key: String!) { me { clickReceipt(idempotencyKey: $key) { status reason } } }"""


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    folder = tmp_path / "redis"
    folder.mkdir()
    server = PrivateRedis(folder)
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def own_db(server_url: str) -> Iterator[str]:
    with migrated_database(server_url, "merci_outbox") as dsn:
        yield dsn


def _fan(base: str) -> tuple[GraphQLClient, dict[str, Any]]:
    gql = GraphQLClient(base)
    account = sign_up(gql)
    fan = gql.as_(account["token"])
    assert fan("mutation { topUp(input: {amount: 5000}) { userErrors { code } } }")["topUp"]["userErrors"] == []
    return fan, account


def _click(fan: GraphQLClient, key: str) -> dict[str, Any]:
    answer: dict[str, Any] = fan(FLATTR, {"input": {"url": f"https://outbox-{key}.example/", "idempotencyKey": key}})
    return answer["flattr"]  # type: ignore[no-any-return]


def test_redis_restarted_empty_loses_no_accepted_click(own_db: str, private_redis: PrivateRedis,
                                                       tmp_path: Path) -> None:
    dsn = own_db
    # Rate limits in the API's memory (test only): the Redis under test is the broker alone.
    env = {"BROKER_URL": private_redis.url, "MERCI_RATE_LIMIT_URL": "memory://"}
    api, base = start_api(dsn, tmp_path, **env)
    worker = scheduler = None
    try:
        fan, account = _fan(base)
        handle = account["handle"]
        queued = [f"q{i}" for i in range(30)]
        for key in queued:  # in Redis (no worker runs), and each batch in the outbox
            assert _click(fan, key) == {"click": {"status": "PENDING"}, "userErrors": []}
        assert private_redis.client().dbsize() >= 1
        assert system_scalar(dsn, "select count(*) from click_outbox where sent_at is not null") >= 1

        private_redis.kill()  # with every one of them
        held = [f"h{i}" for i in range(10)]
        for key in held:  # the broker is down: accepted all the same, kept in the outbox unsent
            assert _click(fan, key) == {"click": {"status": "PENDING"}, "userErrors": []}
        assert system_scalar(dsn, "select count(*) from click_outbox where sent_at is null") >= 1
        assert fan(RECEIPT, {"key": "h3"})["me"]["clickReceipt"] == {"status": "PENDING", "reason": None}
        assert fan(RECEIPT, {"key": "q3"})["me"]["clickReceipt"] == {"status": "PENDING", "reason": None}

        private_redis.start()  # empty
        assert private_redis.client().dbsize() == 0
        # The scheduler sends the unsent batches at once and the lost ones 2 s after they were sent.
        worker = start_worker(dsn, tmp_path / "worker.log", threads=2, **env)
        scheduler = merci(dsn, tmp_path / "scheduler.log", "scheduler", "--interval", "1",
                          MERCI_CLICK_RESEND_SECONDS="2", **env)
        keys = set(queued) | set(held)
        wait_for(lambda: system_scalar(dsn, "select count(*) from clicks c join accounts a on a.id = c.supporter_id"
                                            " where a.handle = $1", handle) == len(keys), 90,
                 "every accepted click stored", interval=0.5)
        wait_for(lambda: system_scalar(dsn, "select count(*) from click_outbox") == 0, 30, "the outbox emptied",
                 interval=0.5)
    finally:
        for service in (scheduler, worker, api):
            if service is not None:
                service.stop()
    rows = system_fetch(dsn, "select c.idempotency_key, count(*) from clicks c join accounts a"
                             " on a.id = c.supporter_id where a.handle = $1 group by 1", handle)
    assert {r[0]: r[1] for r in rows} == {k: 1 for k in keys}  # each once
    assert system_scalar(dsn, "select count(*) from click_rejections") == 0
    assert "sent again" in (tmp_path / "scheduler.log").read_text(errors="replace")  # the lost ones were
    audit = subprocess.run([sys.executable, "-m", "runtime.cli", "audit"], env=service_env(dsn), cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_a_click_into_a_closing_month_is_refused_at_once(own_db: str, tmp_path: Path) -> None:
    """Not PENDING first and MONTH_CLOSED from the workers later: no worker runs here."""
    dsn = own_db
    api, base = start_api(dsn, tmp_path)
    slow, slow_base = start_api(dsn, tmp_path, MERCI_FAST_PATH="0")
    try:
        fan, account = _fan(base)
        assert _click(fan, "before") == {"click": {"status": "PENDING"}, "userErrors": []}
        period = datetime.now(UTC).date().replace(day=1)
        system_scalar(dsn, "insert into month_closes (period, shards, bounds, currency, default_budget)"
                           " values ($1, 1, '{0}', 'EUR', 500) returning 1", period)  # its close has started
        for client in (fan, GraphQLClient(slow_base, account["token"])):
            assert _click(client, "during") == {"click": None, "userErrors": [{"code": "MONTH_CLOSED"}]}
            assert client(RECEIPT, {"key": "during"})["me"]["clickReceipt"] == {"status": "REFUSED",
                                                                                "reason": "MONTH_CLOSED"}
        assert fan(RECEIPT, {"key": "before"})["me"]["clickReceipt"]["status"] == "PENDING"  # (no worker)
    finally:
        slow.stop()
        api.stop()


def test_production_refuses_a_redis_that_keeps_nothing(own_db: str, private_redis: PrivateRedis,
                                                       tmp_path: Path) -> None:
    production = {"MERCI_ENV": "production", "MERCI_SECRET_KEY": "s" * 40, "BROKER_URL": private_redis.url,
                  "MERCI_RATE_LIMIT_URL": private_redis.url, "MERCI_PUBLIC_URL": "https://merci.example"}
    for command in (["serve", "--port", str(free_port())], ["worker", "--processes", "1", "--threads", "1"]):
        run = subprocess.run([sys.executable, "-m", "runtime.cli", *command], env=service_env(own_db, **production),
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert run.returncode != 0, run.stdout + run.stderr
        assert "appendonly no" in run.stderr and "appendfsync always" in run.stderr, run.stderr
        assert f"merci {command[0]}: BROKER_URL" in run.stderr, run.stderr

    client = private_redis.client()
    assert "appendonly no" in (durability_problem(private_redis.url) or "")
    client.config_set("appendonly", "yes")
    assert "appendfsync everysec" in (durability_problem(private_redis.url) or "")
    client.config_set("appendfsync", "always")
    assert durability_problem(private_redis.url) is None
    assert "cannot ask Redis" in (durability_problem(f"redis://127.0.0.1:{free_port()}/0", timeout=2) or "")
