"""What click fraud costs the close: the month's split with and without the held-out
filter (merci.split: `c.id not in (held flags of the month)`), as alternating runs on one
database, with no flag and with 1% of the month's clicks held; and detection's own scan
of the month (merci.fraud.flag), which the worker's close runs once at its start.

    python -m bench.fraud_bench [--supporters N] [--clicks-per-supporter K] [--runs R]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

import asyncpg

from bench.close_bench import PERIOD, prepare, seed
from bench.common import Timer, fresh_database, report, server
from merci import fraud
from merci.split import SPLIT_SQL

FILTER = "       and c.id not in (select f.click_id from click_flags f where f.period = $1::date and f.holds)\n"
assert FILTER in SPLIT_SQL, "the held-out filter moved: update this benchmark"
WITHOUT = SPLIT_SQL.replace(FILTER, "")
SETTINGS = ("set work_mem = '64MB'", "set plan_cache_mode = force_custom_plan", "set jit = off",
            "set enable_mergejoin = off")  # the close's shard settings (merci.close.SHARD_SETTINGS)


async def split_seconds(conn: asyncpg.Connection, sql: str) -> float:
    """The whole month's split, as one shard would run it, written to a temp table."""
    with Timer() as t:
        await conn.execute(f"create temp table s as {sql}", PERIOD, 500, "EUR", None, 0, None)
    await conn.execute("drop table s")
    return t.seconds


async def alternate(conn: asyncpg.Connection, runs: int) -> tuple[list[float], list[float]]:
    before, after = [], []
    for _ in range(runs):
        before.append(await split_seconds(conn, WITHOUT))
        after.append(await split_seconds(conn, SPLIT_SQL))
    return before, after


def row(name: str, before: list[float], after: list[float]) -> tuple[str, str]:
    b, a = statistics.median(before), statistics.median(after)
    runs = f"{', '.join(f'{x:.3f}' for x in before)} / {', '.join(f'{x:.3f}' for x in after)}"
    return name, (f"without {b:.3f} s, with {a:.3f} s ({(a / b - 1) * 100:+.1f}%; medians of {len(before)}"
                  f" alternating runs: {runs})")


async def run(dsn: str, runs: int) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(dsn)  # the owner: it may remove the flags it adds (merci_system may not)
    try:
        for s in SETTINGS:
            await conn.execute(s)
        clicks = int(await conn.fetchval("select count(*) from clicks where period = $1", PERIOD))
        await split_seconds(conn, SPLIT_SQL)  # warm the cache
        rows = [row("split, no flag", *await alternate(conn, runs))]
        held = await conn.fetchval(
            "with h as (insert into click_flags (click_id, tenant_id, period, supporter_id, thing_id, accepted_at,"
            " reasons) select id, tenant_id, period, supporter_id, thing_id, accepted_at, array['ring'] from clicks"
            " where period = $1 and id % 100 = 0 returning 1) select count(*) from h", PERIOD)
        await conn.execute("analyze click_flags")
        rows.append(row(f"split, {held:,} clicks held (1%)", *await alternate(conn, runs)))
        await conn.execute("delete from click_flags")
        scans = []
        for _ in range(3):
            with Timer() as t:
                async with conn.transaction():
                    found = await fraud.flag(conn, period=PERIOD, rules=fraud.Rules())
            scans.append(t.seconds)
            await conn.execute("delete from click_flags")
        rows.append(("detection scan of the month (fraud.flag)",
                     f"{statistics.median(scans):.3f} s (median of {', '.join(f'{x:.3f}' for x in scans)});"
                     f" flagged {found['flagged']} of {clicks:,} synthetic clicks"))
        return rows
    finally:
        await conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--supporters", type=int, default=100_000)
    ap.add_argument("--clicks-per-supporter", type=int, default=10)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with server() as url, fresh_database(url) as dsn:
        info = asyncio.run(seed(dsn, args.supporters, args.clicks_per_supporter))
        asyncio.run(prepare(dsn))
        rows = [("supporters / clicks", f"{args.supporters:,} / {info['clicks']:,}"), *asyncio.run(run(dsn, args.runs))]
        report("click fraud: the split's held-out filter and detection", rows)


if __name__ == "__main__":
    main()
