"""Scale-out on one machine: two API processes, three worker processes and a scheduler
against one PostgreSQL and one Redis.

Clicks go to both APIs (a retry to the other one counts once) and every accepted click
is stored exactly once. The database is then copied (the reference), and the month
closes run twice: on the copy, in a single process; on the original, shared by the
three workers with the scheduler starting last month's close on its own, and one worker
SIGKILLed in the middle of a shard. Both ledgers are identical, entry for entry."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil
import psycopg
import pytest

from merci import config, locks
from merci.db import migrate
from merci.periods import months_before, period_of
from runtime.synthetic import seed_month
from tests.conftest import (
    ROOT,
    GraphQLClient,
    Service,
    create_database,
    drop_database,
    free_port,
    need,
    prove_site,
    service_env,
    sign_up,
    wait_http,
)
from tests.processes import fetch, ledger, merci, scalar, scrape, value, wait_until

FLATTR = """mutation($input: FlattrInput!) { flattr(input: $input) { click { status } userErrors { code } } }"""
SUBMIT = """mutation($input: SubmitThingInput!) { submitThing(input: $input) { thing { id } userErrors { code } } }"""
SUPPORTERS, CLICKS, URLS = 12, 10, 25


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A Redis of this test's own: a fresh server on a free port, else REDIS_URL's server on db 13."""
    if shutil.which("redis-server"):
        port = free_port()
        proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", str(tmp_path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            import redis

            client = redis.Redis(port=port)
            wait_until(lambda: _pings(client), 10, "redis to start")
            client.close()
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.kill()
            proc.wait()
        return
    url = os.environ.get("REDIS_URL", "")
    need(bool(url), "redis: install redis-server or set REDIS_URL")
    parts = urlsplit(url)
    dedicated = urlunsplit((parts.scheme, parts.netloc, "/13", parts.query, parts.fragment))
    import redis

    client = redis.Redis.from_url(dedicated)
    client.flushdb()
    client.close()
    yield dedicated


def _pings(client) -> bool:  # type: ignore[no-untyped-def]
    try:
        return bool(client.ping())
    except Exception:
        return False


async def _seed(dsn: str, period: object) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await seed_month(conn, period=period, supporters=4000, things=211, clicks_per_supporter=10)  # type: ignore[arg-type]
    finally:
        await conn.close()


def copy_database(server: str, source: str, prefix: str) -> str:
    """CREATE DATABASE … TEMPLATE: a byte-identical copy (nothing may be connected to the source)."""
    name = f"{prefix}_{os.urandom(4).hex()}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'create database "{name}" template "{config.database_name(source)}"')
    return config.with_database(source, name)


def holder_of_a_shard(dsn: str, workers: list[Service]) -> Service | None:
    """The worker whose process is inside a close shard's transaction right now."""
    names = {r[0] for r in fetch(dsn, "select a.application_name from pg_locks l join pg_stat_activity a"
                                      " on a.pid = l.pid where l.locktype = 'advisory' and l.classid = $1"
                                      " and l.granted", locks.CLOSE_SHARD)}
    for w in workers:
        try:
            family = {w.proc.pid, *(c.pid for c in psutil.Process(w.proc.pid).children(recursive=True))}
        except psutil.NoSuchProcess:
            continue
        if any(f"merci-worker-{pid}" in names for pid in family):
            return w
    return None


def test_two_apis_three_workers_one_scheduler_give_the_single_process_ledger(
        server_url: str, redis_url: str, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    current = period_of(now)
    previous = months_before(current, 1)
    dsn = create_database(server_url, "merci_ops_scale")
    reference = None
    services: list[Service] = []
    env = {"BROKER_URL": redis_url, "MERCI_BROKER_HEARTBEAT_TTL": "3", "MERCI_CLOSE_GRACE_SECONDS": "0",
           "MERCI_METRICS_CACHE_SECONDS": "0"}

    def start(name: str, *args: str) -> Service:
        svc = merci(dsn, tmp_path / f"{name}.log", *args, **env)
        services.append(svc)
        return svc

    def start_apis() -> list[str]:
        ports = [free_port(), free_port()]
        apis = [start(f"api{i}", "serve", "api", "--port", str(p), "--quiet") for i, p in enumerate(ports)]
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        for api, base in zip(apis, bases, strict=True):
            wait_http(base + "/healthz", api, timeout=60)
        return bases

    def stop_all() -> None:
        for svc in services:
            svc.stop()
        services.clear()

    try:
        asyncio.run(migrate(dsn))
        asyncio.run(_seed(dsn, previous))  # last month: 4000 supporters, waiting for its close

        # -- clicks through two APIs, ingested by three workers ------------------------------
        workers = [start(f"worker{i}", "worker", "--threads", "2") for i in range(3)]
        bases = start_apis()
        apis = [GraphQLClient(b) for b in bases]
        makers = [sign_up(apis[i % 2]) for i in range(2)]
        creators = [apis[i % 2].as_(makers[i]["token"]) for i in range(2)]
        urls = [f"https://scale-{u}.example/post" for u in range(URLS)]
        for u in range(0, URLS, 3):  # some things are claimed by creators, the others stay unclaimed
            prove_site(dsn, makers[u % 2]["handle"], urls[u])
            out = creators[u % 2](SUBMIT, {"input": {"url": urls[u], "title": f"post {u}"}})["submitThing"]
            assert out["userErrors"] == []
        fans = []
        for s in range(SUPPORTERS):
            token = sign_up(apis[s % 2])["token"]
            fan = [api.as_(token) for api in apis]
            fan[s % 2]("mutation { topUp(input: {amount: 5000}) { userErrors { code } } }")
            budget = fan[(s + 1) % 2]("mutation($a: Int!) { setMonthlyBudget(input: {amount: $a}) {"
                                      " userErrors { code } } }", {"a": 200 + 37 * s})
            assert budget["setMonthlyBudget"]["userErrors"] == []
            fans.append(fan)
        accepted: list[tuple[int, str]] = []
        problems: list[str] = []
        lock = threading.Lock()

        def clicker(s: int) -> None:
            for k in range(CLICKS):  # in order, each click to the other API than the last
                url = urls[(s * 3 + k) % URLS]
                out = fans[s][k % 2](FLATTR, {"input": {"url": url, "idempotencyKey": f"s{s}k{k}"}})["flattr"]
                with lock:
                    if out["userErrors"] or out["click"]["status"] != "PENDING":
                        problems.append(f"{s}/{k}: {out}")
                    else:
                        accepted.append((s, f"s{s}k{k}"))
            # A retry of the first click, to the other API: the same click, counted once.
            again = fans[s][1](FLATTR, {"input": {"url": urls[(s * 3) % URLS], "idempotencyKey": f"s{s}k0"}})
            with lock:
                if again["flattr"]["userErrors"]:
                    problems.append(f"retry {s}: {again}")

        threads = [threading.Thread(target=clicker, args=(s,)) for s in range(SUPPORTERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert problems == [] and len(accepted) == SUPPORTERS * CLICKS
        wait_until(lambda: scalar(dsn, "select count(*) from clicks where period = $1", current) == len(accepted),
                   60, "every accepted click stored")
        rows = fetch(dsn, "select supporter_id, idempotency_key from clicks where period = $1", current)
        keys = [r[1] for r in rows]
        assert sorted(keys) == sorted(k for _, k in accepted)  # each accepted click once, the retries no more
        assert scalar(dsn, "select sum(clicks) from thing_stats where period = $1", current) == len(accepted)
        assert scalar(dsn, "select count(*) from click_rejections") == 0
        samples = [scrape(b + "/metrics") for b in bases]
        assert sum(value(s, "merci_clicks_accepted_total") for s in samples) == len(accepted) + SUPPORTERS
        assert all(value(s, "merci_clicks_accepted_total") > 0 for s in samples)  # both APIs took clicks
        assert all(value(s, "merci_clicks_stored", period=f"{current:%Y-%m}") == len(accepted) for s in samples)
        stop_all()

        # -- the reference: the same database, both months closed in one process ----------
        reference = copy_database(server_url, dsn, "merci_ops_scale_ref")
        for args in ((f"{previous:%Y-%m}", "--inline"), (f"{current:%Y-%m}", "--force", "--inline")):
            ref = subprocess.run([sys.executable, "-m", "runtime.cli", "close-month", *args],
                                 env=service_env(reference), cwd=ROOT, capture_output=True, text=True, timeout=300)
            assert ref.returncode == 0, ref.stdout + ref.stderr

        # -- the same closes, shared: the scheduler starts last month's, a worker dies in it --
        workers = [start(f"close-worker{i}", "worker", "--threads", "1") for i in range(3)]
        bases = start_apis()
        start("scheduler", "scheduler", "--interval", "1")
        victim = None
        deadline = time.monotonic() + 120
        while victim is None and time.monotonic() < deadline:
            victim = holder_of_a_shard(dsn, workers)
        assert victim is not None, "no worker was ever seen inside a close shard"
        victim.kill_group()
        done_at_kill = scalar(dsn, "select count(*) from month_close_shards where period = $1", previous)
        assert done_at_kill < scalar(dsn, "select shards from month_closes where period = $1", previous)
        wait_until(lambda: scalar(dsn, "select status from month_closes where period = $1", previous) == "done",
                   120, "last month's close, finished by the surviving workers")
        closed = subprocess.run([sys.executable, "-m", "runtime.cli", "close-month", f"{current:%Y-%m}", "--force",
                                 "--timeout", "120"], env=service_env(dsn, **env), cwd=ROOT,
                                capture_output=True, text=True, timeout=180)
        assert closed.returncode == 0, closed.stdout + closed.stderr
        for base in bases:
            s = scrape(base + "/metrics")
            for p in (previous, current):
                assert value(s, "merci_month_close_status", period=f"{p:%Y-%m}", status="done") == 1
        stop_all()

        assert ledger(dsn) == ledger(reference)
        summary = "select period, summary::text from month_closes order by period"
        assert [tuple(r) for r in fetch(dsn, summary)] == [tuple(r) for r in fetch(reference, summary)]
        audit = subprocess.run([sys.executable, "-m", "runtime.cli", "audit"], env=service_env(dsn), cwd=ROOT,
                               capture_output=True, text=True, timeout=120)
        assert audit.returncode == 0, audit.stderr
    finally:
        stop_all()
        drop_database(server_url, dsn)
        if reference is not None:
            drop_database(server_url, reference)
