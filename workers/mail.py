"""The `mail` queue: the outbox's mail, through SMTP (or, in development and test, into
the dev mailbox). A failure is retried by Dramatiq with backoff; the scheduler sends
again what stays unsent (merci.mail.unsent)."""

from __future__ import annotations

import asyncpg
import dramatiq

from merci import mail
from workers import settings  # (loaded before the actors: workers/__init__.py)
from workers.runtime import run


class NotSent(Exception):
    """The transport failed: raised so that Dramatiq retries with backoff."""


@dramatiq.actor(actor_name=mail.SEND_ACTOR, queue_name=mail.SEND_QUEUE, max_retries=10, min_backoff=5_000,
                max_backoff=600_000, time_limit=120_000)
def send(mail_id: int) -> None:
    async def body(pool: asyncpg.Pool) -> str | None:
        async with pool.acquire() as conn:
            return await mail.send(conn, settings, mail_id=mail_id)

    if run(body) == "failed":
        raise NotSent(f"mail {mail_id} not sent (mail_outbox.last_error says why)")
