"""The `webhooks` queue: signed deliveries to partners, retried with backoff.

Triggers write events in the transactions that make them (an outbox); a pump in
each worker process that consumes this queue turns new events into deliveries and
sends one message per delivery, and re-sends those a crash kept from the broker.
A failed attempt raises, so Dramatiq retries it with backoff (MERCI_WEBHOOK_*
tune it); once retries are exhausted the delivery is marked failed (replayable).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import asyncpg
import dramatiq

from merci import autosubmit, webhooks
from merci.fetch import policy_for
from workers import settings  # (loaded before the actors: workers/__init__.py)
from workers.runtime import run

log = logging.getLogger("merci.webhooks")
UNSENT_AFTER_SECONDS = 30.0


class DeliveryFailed(Exception):
    """An attempt failed; raised so that Dramatiq retries the message with backoff."""


@dramatiq.actor(actor_name=webhooks.DELIVER_ACTOR, queue_name=webhooks.WEBHOOK_QUEUE,
                max_retries=settings.webhook_max_retries, min_backoff=settings.webhook_min_backoff_ms,
                max_backoff=settings.webhook_max_backoff_ms, on_retry_exhausted=webhooks.GIVE_UP_ACTOR,
                time_limit=60_000)
def deliver(delivery_id: int) -> None:
    async def body(pool: asyncpg.Pool) -> webhooks.Outcome:
        async with pool.acquire() as conn:
            return await webhooks.deliver(conn, delivery_id=delivery_id, policy=policy_for(settings))

    try:
        outcome = run(body)
    except asyncpg.LockNotAvailableError as exc:  # another copy is mid-POST: try again later
        raise DeliveryFailed(f"webhook delivery {delivery_id} is busy") from exc
    if outcome.status == "retry":
        raise DeliveryFailed(f"webhook delivery {delivery_id}: {outcome.error}")


@dramatiq.actor(actor_name=webhooks.GIVE_UP_ACTOR, queue_name=webhooks.WEBHOOK_QUEUE, max_retries=20)
def give_up(message: dict[str, Any], retries: dict[str, Any]) -> None:
    delivery_id = int(message["args"][0])

    async def body(pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            await webhooks.give_up(conn, delivery_id=delivery_id)

    run(body)


def pump_once(broker: dramatiq.Broker) -> int:
    """New events into deliveries, and every delivery or discovery not yet in the
    broker into it. Safe to run anywhere, any number of times at once."""

    async def body(pool: asyncpg.Pool) -> tuple[list[int], list[int]]:
        async with pool.acquire() as conn:
            new = await webhooks.dispatch(conn)
            lost = await webhooks.unsent(conn, older_than_seconds=UNSENT_AFTER_SECONDS)
            things = await autosubmit.stale(conn, older_than_seconds=60)
        return sorted(set(new) | set(lost)), things

    deliveries, things = run(body)
    for delivery_id in deliveries:
        deliver.send(delivery_id)
    if deliveries:
        async def mark(pool: asyncpg.Pool) -> None:
            async with pool.acquire() as conn:
                await webhooks.mark_enqueued(conn, deliveries)

        run(mark)
    for thing_id in things:
        broker.enqueue(dramatiq.Message(queue_name=autosubmit.DISCOVER_QUEUE, actor_name=autosubmit.DISCOVER_ACTOR,
                                        args=(thing_id,), kwargs={}, options={}))
    return len(deliveries)


class Pump(dramatiq.Middleware):
    """A thread per worker process that polls the outbox (only where this process
    consumes the webhooks queue)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        queues = getattr(worker, "queues", None)
        if queues and webhooks.WEBHOOK_QUEUE not in queues:
            return
        self.thread = threading.Thread(target=self.loop, args=(broker,), name="merci-webhook-pump", daemon=True)
        self.thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def loop(self, broker: dramatiq.Broker) -> None:
        while not self.stop.wait(settings.webhook_poll_seconds):
            try:
                pump_once(broker)
            except Exception:  # the database or broker is away: try again next tick
                log.warning("webhook pump failed", exc_info=True)


dramatiq.get_broker().add_middleware(Pump())
