"""Handing work to the workers by actor name, on the broker BROKER_URL chooses.

api/ and directory/ never import workers/: they send a message naming an actor
(`domain.verb`) with JSON primitives, after their transaction has committed.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker

QUEUES = ("default", "clicks", "money", "directory", "webhooks")


def make_broker(broker_url: str, database_url: str, *, results: bool = False) -> dramatiq.Broker:
    """redis:// → Redis, amqp:// → RabbitMQ, anything else → the PostgreSQL broker.

    MERCI_BROKER_HEARTBEAT_TTL (seconds, default 60): how long before the messages a
    dead worker had claimed go back to the queue.
    """
    ttl = float(os.environ.get("MERCI_BROKER_HEARTBEAT_TTL", "60"))
    if broker_url.startswith(("redis://", "rediss://")):
        from dramatiq.brokers.redis import RedisBroker

        return RedisBroker(url=broker_url, heartbeat_timeout=int(ttl * 1000))
    if broker_url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=broker_url)
    if broker_url == "stub://":
        return StubBroker()
    from dramatiq_postgres import PostgresBroker

    return PostgresBroker(url=broker_url or database_url, results=results, heartbeat_ttl=ttl,
                          heartbeat_interval=min(15.0, ttl / 4), maintenance_interval=min(30.0, ttl / 2))


class Queue:
    def __init__(self, broker: dramatiq.Broker) -> None:
        self.broker = broker
        for name in QUEUES:
            broker.declare_queue(name)

    def send(self, actor_name: str, *args: Any, queue_name: str = "default",
             delay_ms: int | None = None, message_id: str | None = None, **kwargs: Any) -> str:
        message = dramatiq.Message(
            queue_name=queue_name, actor_name=actor_name, args=args, kwargs=kwargs, options={},
        )
        if message_id is not None:
            message = message.copy(message_id=message_id)
        self.broker.enqueue(message, delay=delay_ms)
        return message.message_id

    async def asend(self, actor_name: str, *args: Any, queue_name: str = "default",
                    message_id: str | None = None, **kwargs: Any) -> str:
        # Broker clients are blocking; keep them off the event loop.
        return await asyncio.to_thread(
            self.send, actor_name, *args, queue_name=queue_name, message_id=message_id, **kwargs
        )

    def close(self) -> None:
        self.broker.close()
