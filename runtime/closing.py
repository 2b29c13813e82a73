"""The operator's side of the month close and the audit (`merci close-month`, `merci audit`)."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, date, datetime

import asyncpg

from merci import audit, close
from merci.config import Settings
from merci.errors import Unavailable, unavailable
from merci.periods import PeriodError, parse_period, period_of
from merci.queue import MONEY, Queue, make_broker
from runtime.progress import Progress


def _fail(message: str, code: int = 1) -> int:
    print(f"merci: {message}", file=sys.stderr)
    return code


EXIT_UNAVAILABLE = 4  # the database stayed out of reach (1: a self-check failed, 2: refused, 3: no workers)


async def run_close(settings: Settings, period_text: str, *, force: bool, shards: int, timeout: float,
                    inline: bool, retry_for: float = 120.0) -> int:
    try:
        period = parse_period(period_text)
    except PeriodError as exc:
        return _fail(str(exc), 2)
    current = period_of(datetime.now(UTC))
    if period > current:
        return _fail(f"{period:%Y-%m} has not started yet", 2)
    if period == current:
        if not force:
            return _fail(f"{period:%Y-%m} is the current month: wait for it to end, or use --force", 2)
        if settings.production:
            return _fail("--force is refused in production", 2)
    if not 1 <= shards <= 4096:
        return _fail("--shards is between 1 and 4096", 2)
    # The close resumes where it stopped: a lost connection is taken again, with backoff,
    # for up to `retry_for` seconds, after which the command exits EXIT_UNAVAILABLE.
    give_up, delay = time.monotonic() + retry_for, 0.5
    while True:
        try:
            return await _close(settings, period, shards=shards, timeout=timeout, inline=inline)
        except Exception as exc:
            outage = _outage(exc)
            if outage is None:
                raise
            if time.monotonic() + delay > give_up:
                return _fail(f"{outage}: the close of {period:%Y-%m} resumes where it stopped when re-run",
                             EXIT_UNAVAILABLE)
            print(f"merci: {outage}; trying again in {delay:g} s", file=sys.stderr)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def _outage(exc: BaseException) -> Unavailable | None:
    """The database out of reach (merci.errors.unavailable), or the connection this command
    held closed under it (asyncpg's InterfaceError, a bug anywhere else)."""
    found = unavailable(exc)
    if found is None and isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc):
        found = Unavailable("database", str(exc))
    return found


async def _close(settings: Settings, period: date, *, shards: int, timeout: float, inline: bool) -> int:
    conn = await asyncpg.connect(settings.system_database_url, timeout=settings.db_connect_timeout)
    try:
        try:
            started = await close.start(conn, period=period, shards=shards, currency=settings.currency,
                                        default_budget=settings.default_budget)
        except close.ClicksQueued as exc:
            return _fail(str(exc), 3)  # as for workers that do not close the shards: run again
        except close.CloseError as exc:
            return _fail(str(exc), 2)
        bar = Progress(f"closing {period:%Y-%m}", started["shards"])
        if inline:
            for shard in range(started["shards"]):
                await close.close_shard(conn, period=period, shard=shard)
                bar.update(shard + 1)
            await close.finish(conn, period=period)
        else:
            queue = Queue(make_broker(settings.broker_url, settings.system_database_url,
                                      heartbeat_ttl=settings.broker_heartbeat_ttl))
            try:
                await queue.asend(close.CLOSE_ACTOR, f"{period:%Y-%m}", started["shards"], settings.currency,
                                  settings.default_budget, queue_name=MONEY)
            finally:
                queue.close()
        deadline = time.monotonic() + timeout
        while True:
            done, total, status = await close.progress(conn, period)
            bar.update(done, status or "")
            if done == total and status == "running":
                status = await close.finish(conn, period=period)
            if status == "done":
                break
            if status == "failed":
                error = await conn.fetchval("select error from month_closes where period = $1", period)
                return _fail(f"the close of {period:%Y-%m} failed its self-check: {error}")
            if time.monotonic() > deadline:
                return _fail(f"the close of {period:%Y-%m} is at {done}/{total} shards after {timeout:.0f}s: "
                             "are workers running on the money queue? (re-run to resume)", 3)
            await asyncio.sleep(0.2)
        summary = await conn.fetchval("select summary from month_closes where period = $1", period)
        print(f"closed {period:%Y-%m}: {summary}")
        return 0
    finally:
        await conn.close()


async def run_audit(settings: Settings) -> int:
    conn = await asyncpg.connect(settings.system_database_url)
    try:
        bar = Progress("audit", len(audit.CHECKS))
        seen: list[str] = []

        def step(name: str) -> None:
            bar.update(len(seen), name)
            seen.append(name)

        violations = await audit.audit(conn, on_check=step)
        bar.update(len(seen))
    finally:
        await conn.close()
    if violations:
        for v in violations:
            print(f"VIOLATION {v}", file=sys.stderr)
        return 1
    print(f"ledger sound: {len(audit.CHECKS)} checks passed")
    return 0
