"""`merci scheduler`: the scheduler's loop (merci.scheduler.tick says what is due),
until SIGTERM or SIGINT; `--once` for a CronJob."""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import UTC, datetime

from merci.config import Settings
from merci.db import create_pool
from merci.queue import Queue
from merci.scheduler import tick

log = logging.getLogger("merci.scheduler")


async def run(settings: Settings, queue: Queue, *, once: bool, interval: float) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    pool = await create_pool(settings.system_database_url, max_size=2)
    try:
        while True:
            async with pool.acquire() as conn:
                sent = await tick(conn, settings, queue, datetime.now(UTC))
            for item in sent:
                log.info("scheduled %s", item)
            if once:
                return 0
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
                return 0
            except TimeoutError:
                continue
    finally:
        await pool.close()
        queue.close()
