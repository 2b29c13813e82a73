"""The `clicks` queue: batches of accepted clicks into PostgreSQL."""

from __future__ import annotations

from typing import Any

import asyncpg
import dramatiq
import structlog

from merci import clicks, fraud, subscriptions
from merci.periods import parse_period
from workers.runtime import run

log = structlog.get_logger("merci.workers.clicks")


@dramatiq.actor(actor_name=clicks.INGEST_ACTOR, queue_name=clicks.CLICK_QUEUE, max_retries=50,
                min_backoff=200, max_backoff=30_000)
def ingest(batch: list[list[Any]], signature: str | None = None, outbox_id: str | None = None) -> None:
    """`outbox_id`: the batch's row in click_outbox (Redis, RabbitMQ: merci.clicks.Handoff)."""
    from workers import settings

    if not clicks.signed(batch, signature, settings.secret_key):
        # Not from the API (whose role may enqueue this actor): dropped, never retried.
        log.error("unsigned or forged click batch dropped", clicks=len(batch))
        # (prometheus_client only once the worker process has booted: see worker_metrics)
        from merci import metrics

        metrics.CLICKS_FORGED.inc(len(batch))
        return

    async def body(pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            await clicks.ingest(conn, batch, outbox_id=outbox_id, signature=signature)

    run(body)


@dramatiq.actor(actor_name=subscriptions.MATERIALIZE_ACTOR, queue_name=clicks.CLICK_QUEUE, max_retries=50)
def materialize(period: str, subscription_id: int | None = None) -> None:
    async def body(pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            await subscriptions.materialize(conn, period=parse_period(period), subscription_id=subscription_id)

    run(body)


@dramatiq.actor(actor_name=fraud.DETECT_ACTOR, queue_name=clicks.CLICK_QUEUE, max_retries=5)
def detect(period: str) -> None:
    """Scan a month still open for click fraud (the scheduler, every few minutes)."""
    from workers import settings

    async def body(pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            found = await fraud.detect(conn, period=parse_period(period), rules=fraud.Rules.of(settings))
        if found and found["flagged"]:
            log.warning("clicks held for review", period=period, **found)

    run(body)
