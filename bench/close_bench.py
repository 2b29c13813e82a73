"""Month-close benchmark.

Default: 100k supporters / 1M clicks. The close (start, every shard, finish) is
timed against the limit measured in the same run: a raw set-based equal split of
the same clicks (window functions, one CREATE TABLE AS). Goal: close <= 5x raw.

--big: 1M supporters / 10M clicks closed by worker processes through the broker
(`merci close-month`), with the workers' RSS sampled. Goals: <= 120 s, RSS <= 300 MB,
flat in the number of supporters.

    python -m bench.close_bench [--supporters N] [--clicks-per-supporter K] [--big]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import date

import asyncpg
import psutil

from bench.common import Timer, fresh_database, report, server
from merci import audit, close
from merci.config import Settings
from runtime.progress import Progress
from runtime.synthetic import seed_month

PERIOD = date(2025, 6, 1)
RAW_RUNS = 3  # raw splits before the close (and RAW_AFTER after it): the limit is their median
RAW_AFTER = 2

RAW_SPLIT = """
create unlogged table raw_split as
with c as (
    select supporter_id, thing_id,
           row_number() over (partition by supporter_id order by accepted_at, thing_id) as rank,
           count(*) over (partition by supporter_id) as n
      from clicks where period = '2025-06-01'
),
b as (
    select distinct on (account_id) account_id, amount from budget_changes order by account_id, created_at desc, id desc
)
select c.supporter_id, c.thing_id,
       (b.amount - b.amount / 10) / c.n + case when c.rank <= (b.amount - b.amount / 10) % c.n then 1 else 0 end
         as amount
  from c join b on b.account_id = c.supporter_id
"""


async def seed(dsn: str, supporters: int, per: int) -> dict[str, int]:
    bar = Progress("seeding", supporters * per)
    conn = await asyncpg.connect(dsn)
    try:
        return await seed_month(conn, period=PERIOD, supporters=supporters, things=max(401, supporters // 50 + 1),
                                clicks_per_supporter=per,
                                progress=lambda s: bar.update(int(s.split()[-1]) if s.startswith("clicks ") else 0, s))
    finally:
        await conn.close()


async def prepare(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("vacuum analyze")
    finally:
        await conn.close()


async def checkpoint(dsn: str) -> str:
    """A checkpoint before a timed part, so that none falls due in it for what was
    written before it (the seed's WAL); returns the WAL position from which it starts."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("checkpoint")
        return str(await conn.fetchval("select pg_current_wal_lsn()::text"))
    finally:
        await conn.close()


async def wal_since(dsn: str, lsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("select pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)", lsn))
    finally:
        await conn.close()


async def raw(dsn: str, runs: int = RAW_RUNS) -> list[float]:
    """`runs` raw splits. The limit is the median of those before and after the timed
    part: a single run varies by 15-20% here, and the machine's speed drifts by as much
    over the minutes a benchmark takes."""
    conn = await asyncpg.connect(dsn)
    seconds = []
    try:
        for _ in range(runs):
            with Timer() as t:
                await conn.execute(RAW_SPLIT)
            seconds.append(t.seconds)
            await conn.execute("drop table raw_split")
    finally:
        await conn.close()
    return seconds


async def close_inline(settings: Settings, shards: int, concurrency: int) -> float:
    """The close on `concurrency` connections, shards handed out like a worker pool would."""
    conns = [await asyncpg.connect(settings.system_database_url) for _ in range(concurrency)]
    bar = Progress("closing", shards)
    try:
        with Timer() as t:
            await close.start(conns[0], period=PERIOD, shards=shards, currency="EUR", default_budget=500)
            todo = list(range(shards))
            done = 0

            async def run(conn: asyncpg.Connection) -> None:
                nonlocal done
                while todo:
                    shard = todo.pop(0)
                    await close.close_shard(conn, period=PERIOD, shard=shard)
                    done += 1
                    bar.update(done)

            await asyncio.gather(*(run(c) for c in conns))
            status = await close.finish(conns[0], period=PERIOD)
        assert status == "done", status
    finally:
        for c in conns:
            await c.close()
    return t.seconds


def close_on_workers(dsn: str, shards: int, workers: int) -> tuple[float, float]:
    env = dict(os.environ, DATABASE_URL=dsn, MERCI_WORKER_METRICS="0")
    env.pop("BROKER_URL", None)
    procs = [subprocess.Popen([sys.executable, "-m", "dramatiq", "workers", "--processes", "1", "--threads", "1",
                               "--queues", "money"], env=env, start_new_session=True) for _ in range(workers)]
    peak = 0.0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            total = []
            for p in procs:
                try:
                    family = [psutil.Process(p.pid), *psutil.Process(p.pid).children(recursive=True)]
                    total.extend(x.memory_info().rss for x in family)
                except psutil.Error:
                    pass
            if total:
                peak = max(peak, max(total) / 2**20)  # the largest single process
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with Timer() as t:
            r = subprocess.run([sys.executable, "-m", "runtime.cli", "close-month", f"{PERIOD:%Y-%m}", "--shards",
                                str(shards), "--timeout", "900"], env=env)
        assert r.returncode == 0
    finally:
        stop.set()
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)
    return t.seconds, peak


async def audited(settings: Settings) -> str:
    """`merci audit` over the closed ledger (untimed): the speed must not cost a cent."""
    conn = await asyncpg.connect(settings.system_database_url)
    try:
        violations = await audit.audit(conn)
    finally:
        await conn.close()
    return "; ".join(map(str, violations)) or f"sound ({len(audit.CHECKS)} checks)"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--supporters", type=int, default=100_000)
    ap.add_argument("--clicks-per-supporter", type=int, default=10)
    ap.add_argument("--shards", type=int, default=close.DEFAULT_SHARDS,
                    help="default: what the scheduler closes a month with (fewer, larger shards cost less each)")
    ap.add_argument("--big", action="store_true", help="1M supporters / 10M clicks on worker processes")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if args.big:
        args.supporters, args.clicks_per_supporter, args.shards = 1_000_000, 10, 128
    with server() as url, fresh_database(url) as dsn:
        info = asyncio.run(seed(dsn, args.supporters, args.clicks_per_supporter))
        asyncio.run(prepare(dsn))
        asyncio.run(checkpoint(dsn))
        splits = asyncio.run(raw(dsn))
        lsn = asyncio.run(checkpoint(dsn))
        settings = Settings(database_url=dsn).derived()
        if args.big:
            seconds, rss = close_on_workers(dsn, args.shards, args.workers)
            closed = [(f"close on {args.workers} worker processes", f"{seconds:.2f} s (goal <= 120 s)"),
                      ("peak worker RSS", f"{rss:.0f} MB (goal <= 300 MB)")]
        else:
            seconds = asyncio.run(close_inline(settings, args.shards, concurrency=2))
            closed = [("close (2 connections)", f"{seconds:.2f} s")]
        wal = asyncio.run(wal_since(dsn, lsn))
        after = asyncio.run(raw(dsn, RAW_AFTER))
        limit = statistics.median(splits + after)
        goal = "" if args.big else " (goal <= 5x)"
        rows = [("supporters / clicks", f"{args.supporters:,} / {info['clicks']:,}"),
                ("raw equal split (limit)", f"{limit:.2f} s (median of {', '.join(f'{s:.2f}' for s in splits)}"
                                            f" before the close, {', '.join(f'{s:.2f}' for s in after)} after)"),
                *closed,
                ("WAL written by the close", f"{wal / 2**20:,.0f} MB"),
                ("ratio close / raw", f"{seconds / limit:.2f}x{goal}"),
                ("audit after the close", asyncio.run(audited(settings)))]
        report("month close", rows)


if __name__ == "__main__":
    main()
