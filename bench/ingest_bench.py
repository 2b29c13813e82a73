"""Click ingestion: accepted clicks (already on the queue, in messages of 1,000)
to stored rows by worker processes, against the limit measured in the same run:
a raw batched `INSERT ... ON CONFLICT DO NOTHING` of the same rows.
Goal: ingestion >= 25% of raw.

    python -m bench.ingest_bench [--clicks 200000] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime

import asyncpg

from bench.common import Timer, fresh_database, report, server
from merci.clicks import sign_batch
from merci.config import Settings, load
from merci.queue import Queue, make_broker
from runtime.synthetic import seed_month

BATCH = 1000
RAW = """
insert into clicks (tenant_id, supporter_id, thing_id, period, accepted_at, idempotency_key, source)
select x.t, x.s, x.th, date_trunc('month', x.at at time zone 'UTC')::date, x.at, x.k, 'click'
  from unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::timestamptz[], $5::text[]) as x(t, s, th, at, k)
on conflict do nothing
"""


def make_batches(info: dict[str, int], clicks: int, things: int) -> list[list[list[object]]]:
    at = datetime(2025, 3, 15, 12, tzinfo=UTC).isoformat()
    rows = []
    per = clicks // info["supporters"]
    for s in range(info["supporters"]):
        for k in range(per):
            rows.append([info["first_supporter"] + s, 1, info["first_thing"] + (s * 7 + k) % things, None,
                         f"k{k}", at, "click"])
    return [rows[i:i + BATCH] for i in range(0, len(rows), BATCH)]


async def raw_insert(dsn: str, batches: list[list[list[object]]]) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        with Timer() as t:
            for b in batches:
                cols = list(zip(*b, strict=True))
                await conn.execute(RAW, cols[1], cols[0], cols[2], [datetime.fromisoformat(a) for a in cols[5]],
                                   cols[4])
        await conn.execute("truncate clicks")
    finally:
        await conn.close()
    return t.seconds


async def count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("select count(*) from clicks"))
    finally:
        await conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clicks", type=int, default=200_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    things = 1009
    with server() as url, fresh_database(url) as dsn:
        conn_info = asyncio.run(_seed(dsn, supporters=max(1, args.clicks // 100), things=things))
        batches = make_batches(conn_info, args.clicks, things)
        total = sum(len(b) for b in batches)
        limit = asyncio.run(raw_insert(dsn, batches))
        env = dict(os.environ, DATABASE_URL=dsn, MERCI_WORKER_METRICS="0")
        env.pop("BROKER_URL", None)
        workers = [subprocess.Popen([sys.executable, "-m", "dramatiq", "workers", "--processes", "1", "--threads",
                                     str(args.threads), "--queues", "clicks"], env=env) for _ in range(args.workers)]
        try:
            time.sleep(3)  # workers booted and polling
            queue = Queue(make_broker("", Settings(database_url=dsn).derived().app_database_url))
            with Timer() as t:
                secret = load(database_url=dsn).secret_key  # the workers' (from the environment)
                for b in batches:
                    queue.send("clicks.ingest", b, sign_batch(b, secret), queue_name="clicks")
                while asyncio.run(count(dsn)) < total:
                    time.sleep(0.05)
            queue.close()
        finally:
            for w in workers:
                w.terminate()
            for w in workers:
                w.wait(60)
        report("click ingestion", [
            ("clicks (messages of 1,000)", f"{total:,}"),
            ("raw batched INSERT ON CONFLICT (limit)", f"{limit:.2f} s = {total / limit:,.0f} rows/s"),
            (f"enqueue + ingest on {args.workers}x{args.threads} workers",
             f"{t.seconds:.2f} s = {total / t.seconds:,.0f} rows/s"),
            ("ratio ingestion / raw", f"{limit / t.seconds:.0%} (goal >= 25%)"),
        ])


async def _seed(dsn: str, *, supporters: int, things: int) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return await seed_month(conn, period=date(2025, 2, 1), supporters=supporters, things=things,
                                clicks_per_supporter=0)
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
