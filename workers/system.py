"""Housekeeping actors."""

from __future__ import annotations

import dramatiq

from merci.queue import DEFAULT
from workers.runtime import run


@dramatiq.actor(actor_name="system.ping", queue_name=DEFAULT, max_retries=0)
def ping(marker: str) -> None:
    """Round-trips through the broker and the database (used by health checks and tests)."""

    async def body(pool):  # type: ignore[no-untyped-def]
        async with pool.acquire() as conn:
            await conn.execute(
                "insert into worker_pings (marker) values ($1) on conflict do nothing", marker
            )

    run(body)
