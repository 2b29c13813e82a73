"""Handing work to the workers by actor name, on the broker BROKER_URL chooses.

api/ and directory/ never import workers/: they send a message naming an actor
(`domain.verb`) with JSON primitives, after their transaction has committed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import dramatiq
from dramatiq.brokers.stub import StubBroker

# The queues, each consumed by its own workers (k8s: a deployment per queue).
DEFAULT = "default"  # a worker's liveness ping
CLICKS = "clicks"  # click ingestion and subscriptions' clicks
MONEY = "money"  # the month close, escrow, payouts
DIRECTORY = "directory"  # site verification, owner discovery, rankings
WEBHOOKS = "webhooks"  # deliveries to partners
MAIL = "mail"  # the outbox's mail (merci.mail), consumed with the webhooks
QUEUES = (DEFAULT, CLICKS, MONEY, DIRECTORY, WEBHOOKS, MAIL)

# merci_app may not write the broker's tables: it sends through merci_enqueue
# (merci/sql/0014_least_privilege.sql), which takes only the actors the API sends and
# writes the broker's own row. Workers and the scheduler (merci_system) write directly.
MAY_WRITE_QUEUE = "select has_table_privilege('dramatiq.queue', 'insert')"
CHECKED_ENQUEUE = "select merci_enqueue($1, $2, $3)"
CHECKED_ENQUEUE_SYNC = "select merci_enqueue(%s, %s, %s)"  # the same, for psycopg


def make_broker(broker_url: str, database_url: str, *, results: bool = False,
                heartbeat_ttl: float = 60.0) -> dramatiq.Broker:
    """redis:// → Redis, amqp:// → RabbitMQ, anything else → the PostgreSQL broker.

    heartbeat_ttl (settings.broker_heartbeat_ttl, seconds): how long before the messages
    a dead worker had claimed go back to the queue.
    """
    if broker_url.startswith(("redis://", "rediss://")):
        return _redis_broker(broker_url, heartbeat_ttl)
    if broker_url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        # pika logs each step of every failed connection attempt at ERROR, tracebacks
        # included: about 40 lines (19 kB) per click refused during an outage (issue 17).
        # The failure reaches the caller as Dramatiq's exception once its attempts are
        # spent, and Merci logs that once per outage (merci.outage_log); workers' consumers
        # log each reconnection themselves (dramatiq.worker).
        logging.getLogger("pika").setLevel(logging.CRITICAL)
        # Publisher confirms: a publish returns once RabbitMQ has the message (in its
        # durable queue, which Dramatiq declares durable and publishes persistent to).
        return RabbitmqBroker(url=broker_url, confirm_delivery=True)
    if broker_url == "stub://":
        return StubBroker()
    from dramatiq_postgres import PostgresBroker

    return PostgresBroker(url=broker_url or database_url, results=results, heartbeat_ttl=heartbeat_ttl,
                          heartbeat_interval=min(15.0, heartbeat_ttl / 4),
                          maintenance_interval=min(30.0, heartbeat_ttl / 2))


def _redis_broker(broker_url: str, heartbeat_ttl: float) -> dramatiq.Broker:
    from dramatiq.brokers.redis import MAINTENANCE_COMMAND_BLACKLIST, RedisBroker

    class ScheduledRedisBroker(RedisBroker):
        """Dramatiq's RedisBroker, whose maintenance also runs on a schedule.

        A dead worker's claimed messages go back to their queue only when some process's
        call into Redis runs the broker's maintenance for that queue, and Dramatiq runs it
        at random, on about one call in a thousand: with a few idle workers, a killed
        worker's messages came back after minutes, or when the next worker started
        (issue 17). Here each process runs it on every queue at least every quarter of
        the heartbeat timeout, piggybacked on the calls it makes anyway (an idle consumer
        polls several times a second): the messages of a worker silent for the heartbeat
        timeout return within about 1.25 times the timeout. Maintenance finds the dead
        workers in one sorted set, so running it this often costs one small script step.
        """

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)  # type: ignore[no-untyped-call]  # (Dramatiq's brokers are untyped)
            self.maintenance_every = self.heartbeat_timeout / 4000  # seconds
            self.maintained: dict[str, float] = {}  # queue → when its maintenance last ran here
            self.forced = threading.local()

        def _should_do_maintenance(self, command: str) -> int:
            # Called by the dispatch below, with the queue known there.
            return 1 if getattr(self.forced, "now", False) else int(super()._should_do_maintenance(command))

        def _dispatch(self, command: str) -> Callable[..., Any]:
            dispatch = super()._dispatch(command)  # type: ignore[no-untyped-call]
            if command in MAINTENANCE_COMMAND_BLACKLIST:
                return dispatch  # type: ignore[no-any-return]

            def do_dispatch(queue_name: str, *args: Any) -> Any:
                now = time.monotonic()
                due = now - self.maintained.get(queue_name, -math.inf) >= self.maintenance_every
                if due:
                    self.maintained[queue_name] = now  # (two threads at once: both run it, harmlessly)
                self.forced.now = due
                try:
                    return dispatch(queue_name, *args)
                finally:
                    self.forced.now = False

            return do_dispatch

    broker: dramatiq.Broker = ScheduledRedisBroker(url=broker_url, heartbeat_timeout=int(heartbeat_ttl * 1000))
    return broker


def durability_problem(broker_url: str, *, timeout: float = 5.0) -> str | None:
    """Why the broker BROKER_URL names would lose what it was given when it restarts, or
    None. `merci serve` and `merci worker` refuse to start on such a broker in production
    (docs/operations.md: what each broker guarantees).

    PostgreSQL: a message is a row, committed. RabbitMQ: make_broker publishes with
    confirms to durable queues, whatever the URL says. Redis keeps its data in memory:
    only an append-only file fsynced on every write (`appendonly yes`, `appendfsync
    always`) keeps a message it acknowledged through a crash, so Redis is asked.
    """
    if not broker_url.startswith(("redis://", "rediss://")):
        return None
    import redis

    try:
        client = redis.Redis.from_url(broker_url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                      decode_responses=True)
        try:
            settings = {**client.config_get("appendonly"), **client.config_get("appendfsync")}
        finally:
            client.close()
    except redis.RedisError as exc:
        return (f"BROKER_URL: cannot ask Redis whether it keeps its messages ({type(exc).__name__}: {exc}); "
                "it must answer CONFIG GET with appendonly yes and appendfsync always")
    appendonly, appendfsync = settings.get("appendonly"), settings.get("appendfsync")
    if appendonly != "yes" or appendfsync != "always":
        return (f"BROKER_URL: Redis runs with appendonly {appendonly} and appendfsync {appendfsync}, so a restart "
                "loses queued messages; set `appendonly yes` and `appendfsync always` (docs/operations.md)")
    return None


def _is_postgres(broker: dramatiq.Broker) -> bool:
    return type(broker).__module__.startswith("dramatiq_postgres")


class Queue:
    def __init__(self, broker: dramatiq.Broker, *, database_url: str | None = None) -> None:
        self.broker = broker
        for name in QUEUES:
            broker.declare_queue(name)
        self.direct: AsyncPostgresEnqueue | None = None
        if database_url is not None and _is_postgres(broker):
            self.direct = AsyncPostgresEnqueue(broker, database_url)
        self.checked: bool | None = None  # through merci_enqueue? (PostgreSQL broker, asked once)
        # A message sent is in PostgreSQL: nothing to keep beside it (merci.clicks.Handoff).
        self.durable = _is_postgres(broker)

    def send(self, actor_name: str, *args: Any, queue_name: str = DEFAULT,
             delay_ms: int | None = None, message_id: str | None = None, **kwargs: Any) -> str:
        message = dramatiq.Message(
            queue_name=queue_name, actor_name=actor_name, args=args, kwargs=kwargs, options={},
        )
        if message_id is not None:
            message = message.copy(message_id=message_id)
        if _is_postgres(self.broker) and self._checked():
            if delay_ms:
                raise ValueError("a role that sends through merci_enqueue cannot delay a message")
            self._checked_enqueue(message)
        else:
            self.broker.enqueue(message, delay=delay_ms)
        return message.message_id

    def _checked(self) -> bool:
        if self.checked is None:
            from dramatiq_postgres.utils import transaction

            with transaction(self.broker.pool) as curs:  # type: ignore[attr-defined]  # PostgresBroker's
                curs.execute(MAY_WRITE_QUEUE)
                self.checked = not curs.fetchone()[0]
        return self.checked

    def _checked_enqueue(self, message: dramatiq.Message[Any]) -> None:
        """The broker's enqueue (hooks, retried connection) through merci_enqueue."""
        from dramatiq_postgres.utils import retry_pg, tidy4json, transaction
        from psycopg.types.json import Jsonb

        @retry_pg  # type: ignore[untyped-decorator]
        def insert() -> None:
            with transaction(self.broker.pool) as curs:  # type: ignore[attr-defined]
                curs.execute(CHECKED_ENQUEUE_SYNC, (message.queue_name, message.message_id, Jsonb(tidy4json(message))))

        self.broker.emit_before("enqueue", message, None)
        insert()
        self.broker.emit_after("enqueue", message, None)

    async def asend(self, actor_name: str, *args: Any, queue_name: str = DEFAULT,
                    message_id: str | None = None, **kwargs: Any) -> str:
        if self.direct is not None:
            message = dramatiq.Message(queue_name=queue_name, actor_name=actor_name, args=args, kwargs=kwargs,
                                       options={})
            if message_id is not None:
                message = message.copy(message_id=message_id)
            await self.direct.enqueue(message)
            return message.message_id
        # Broker clients are blocking; keep them off the event loop.
        return await asyncio.to_thread(
            self.send, actor_name, *args, queue_name=queue_name, message_id=message_id, **kwargs
        )

    async def aclose(self) -> None:
        if self.direct is not None:
            await self.direct.close()

    def close(self) -> None:
        self.broker.close()


class AsyncPostgresEnqueue:
    """dramatiq-postgres's own enqueue statement, sent with asyncpg on the event loop.

    The broker's client is blocking psycopg: from an async server every send would
    hop to a thread and back, and under load the threads queue for the GIL behind
    the event loop (about 5 ms per hand-over). The row written is the broker's own
    (its query, its message JSON, its middleware hooks), so workers cannot tell.

    The library has no public asynchronous enqueue, so this takes its statement
    (QUERIES.ENQUEUE, not public) and merci_enqueue (migration 0014) writes the same
    row: pyproject.toml holds dramatiq-postgres to the minor version they were read
    against, and tests/merci/test_queue.py fails when its statement changes or when any
    way of sending writes a row other than the broker's own.
    """

    def __init__(self, broker: dramatiq.Broker, dsn: str, *, max_size: int = 4) -> None:
        from dramatiq_postgres.broker import QUERIES

        self.broker = broker
        self.dsn = dsn
        self.max_size = max_size
        query = QUERIES.ENQUEUE if broker.notify else QUERIES.ENQUEUE_QUIET
        parts = query.split("%s")
        self.query = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], start=1))
        self.checked = False  # merci_app: through merci_enqueue (known once the pool is open)
        self.pool: asyncpg.Pool | None = None
        self.opening: asyncio.Lock | None = None

    async def _pool(self) -> asyncpg.Pool:
        if self.pool is None:
            self.opening = self.opening or asyncio.Lock()
            async with self.opening:
                if self.pool is None:
                    pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.max_size,
                                                     init=_json_as_text)
                    self.checked = not await pool.fetchval(MAY_WRITE_QUEUE)
                    self.pool = pool
        return self.pool

    async def enqueue(self, message: dramatiq.Message[Any]) -> None:
        self.broker.emit_before("enqueue", message, None)
        pool = await self._pool()
        row = (message.queue_name, message.message_id, message.encode().decode())
        if self.checked:
            await pool.execute(CHECKED_ENQUEUE, *row)
        else:
            await pool.execute(self.query, *row, 0)
        self.broker.emit_after("enqueue", message, None)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None


async def _json_as_text(conn: asyncpg.Connection) -> None:
    # The message is already JSON (dramatiq's encoder): send it as it is.
    await conn.set_type_codec("jsonb", encoder=str, decoder=str, schema="pg_catalog")
