"""Owner discovery of auto-submitted things (on the `directory` queue: it fetches
pages, through the SSRF guard, like site verification)."""

from __future__ import annotations

import asyncpg
import dramatiq

from merci import autosubmit
from merci.fetch import policy_for
from workers.runtime import run


@dramatiq.actor(actor_name=autosubmit.DISCOVER_ACTOR, queue_name=autosubmit.DISCOVER_QUEUE, max_retries=3,
                time_limit=60_000)
def discover(thing_id: int) -> None:
    """Find who owns a thing clicked by URL; once found, its escrow goes to them."""
    from workers import settings

    async def body(pool: asyncpg.Pool) -> autosubmit.Discovery:
        async with pool.acquire() as conn:
            return await autosubmit.discover(conn, thing_id=thing_id, public_url=settings.public_url,
                                             policy=policy_for(settings))

    # The shares it earned while unclaimed moved with it, in discovery's transaction.
    run(body)
