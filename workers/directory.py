"""The `directory` queue: site verification and search rankings."""

from __future__ import annotations

import asyncpg
import dramatiq

from merci import search, sites
from merci.fetch import policy_for
from workers.runtime import run


@dramatiq.actor(actor_name=sites.VERIFY_ACTOR, queue_name=sites.DIRECTORY_QUEUE, max_retries=3,
                time_limit=60_000)
def verify_site(site_id: int) -> None:
    """Fetch the site (SSRF-guarded) and record whether it proves its owner."""
    from workers import settings

    async def body(pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            await sites.verify(conn, site_id=site_id, public_url=settings.public_url, policy=policy_for(settings))

    run(body)


@dramatiq.actor(actor_name=search.RANKINGS_ACTOR, queue_name=sites.DIRECTORY_QUEUE, max_retries=3)
def refresh_rankings() -> None:
    """Recompute POPULAR and TRENDING from the last 30 days of clicks."""

    async def body(pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            await search.refresh_rankings(conn)

    run(body)
