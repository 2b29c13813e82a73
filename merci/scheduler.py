"""The scheduler loop: enqueue work that is due. Every tick is idempotent, so
several schedulers (or a CronJob running `--once`) may overlap safely."""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import UTC, datetime

from merci.config import Settings
from merci.queue import Queue

log = logging.getLogger("merci.scheduler")


async def tick(settings: Settings, queue: Queue, now: datetime) -> list[str]:
    """Send the due jobs; returns their actor names (for logs and tests)."""
    sent: list[str] = []
    return sent


async def run(settings: Settings, queue: Queue, *, once: bool, interval: float) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        while True:
            sent = await tick(settings, queue, datetime.now(UTC))
            if sent:
                log.info("scheduled %s", ", ".join(sent))
            if once:
                return 0
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
                return 0
            except TimeoutError:
                continue
    finally:
        queue.close()
