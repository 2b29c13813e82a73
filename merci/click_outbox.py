"""The outbox of accepted clicks (migration 0024): what makes "accepted" durable in
PostgreSQL whatever the broker.

The API writes a batch here before it answers PENDING and sends it at once
(merci.clicks.Handoff); the worker deletes it in the transaction that stores its clicks
(merci.clicks.ingest); the scheduler's relay, below, sends again a batch never sent (the
broker refused it) or sent `resend_after` seconds ago and still here (the broker lost it:
Redis restarted without its data, a message dropped). Sending twice is safe: ingestion is
idempotent on (supporter, key). The relay waits longer after each attempt, so a batch the
workers keep failing on does not flood the queue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg

log = logging.getLogger("merci.click_outbox")

RELAY_BATCHES = 200  # per scheduler tick: the rest waits for the next one
MAX_SPACING = 12  # the nth re-send waits n × resend_after, up to this many times

DUE_SQL = f"""
select id::text, batch::text, signature, attempts, sent_at is null as unsent from click_outbox
 where sent_at is null
    or sent_at < $1::timestamptz - make_interval(secs => $2 * least(attempts + 1, {MAX_SPACING}))
 order by created_at limit {RELAY_BATCHES}
"""


async def relay(conn: asyncpg.Connection, send: Callable[[list[list[Any]], str, str], object], *,
                now: datetime, resend_after: float) -> int:
    """Send the batches due (as merci_system); returns how many were sent. Stops at the
    first the broker refuses (it is down: the next tick tries again)."""
    import orjson

    sent: list[str] = []
    for row in await conn.fetch(DUE_SQL, now, resend_after):
        try:
            send(orjson.loads(row["batch"]), row["signature"], row["id"])
        except Exception as exc:  # the broker is down: every other send would fail alike
            log.warning("outboxed clicks not sent: %s", exc)
            break
        if not row["unsent"]:
            log.warning("outboxed click batch %s sent again (%d times now): its message was lost, or its "
                        "worker keeps failing", row["id"], row["attempts"] + 1)
        sent.append(row["id"])
    if sent:
        await conn.execute("update click_outbox set sent_at = now(), attempts = attempts + 1"
                           " where id = any($1::uuid[])", sent)
    return len(sent)


async def settle(conn: asyncpg.Connection, *, outbox_id: str, signature: str) -> None:
    """The batch is stored: its row goes, in the transaction that stored it. Matched on the
    signature too, so that a message naming another batch's row cannot delete it."""
    await conn.execute("delete from click_outbox where id = $1::uuid and signature = $2", outbox_id, signature)


async def backlog(conn: asyncpg.Connection) -> tuple[int, float]:
    """(batches in the outbox, age in seconds of the oldest): for tests and operators."""
    row = await conn.fetchrow("select count(*)::int as n,"
                              " coalesce(extract(epoch from now() - min(created_at)), 0)::float8 as age"
                              " from click_outbox")
    return int(row["n"]), float(row["age"])
