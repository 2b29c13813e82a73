"""A click is never answered PENDING and then refused MONTH_CLOSED (issue 17, item 5).

The close of a month may begin in the instant between the API's checks of a batch and
its write (the PostgreSQL broker's message, or the outbox row with Redis or RabbitMQ):
the write takes the month's lock and finds the close (migration 0030), so the batch is
answered MONTH_CLOSED and nothing of it is queued. A write that comes first holds the
close back until its clicks are stored, and so does a message a worker holds (state
`consumed`). On a database of its own: these tests begin the close of the current month.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import pytest

from merci import close, config, locks
from merci.clicks import (
    CLICK_QUEUE,
    INGEST_ACTOR,
    Accepted,
    Handoff,
    PrecheckBatcher,
    check_request,
    month_closing,
    sign_batch,
)
from merci.errors import UserError
from merci.periods import month_key, period_of
from merci.queue import Queue, make_broker
from tests.conftest import migrated_database
from tests.factories import TenantWorld, make_tenant_world

SECRET = "race"


@pytest.fixture(scope="module")
def race_db(server_url: str) -> Iterator[str]:
    with migrated_database(server_url, "merci_race") as dsn:
        yield dsn


@pytest.fixture
async def owner(race_db: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(race_db)
    try:
        yield conn
    finally:  # the month open again for the next test
        await conn.execute("delete from month_closes; delete from click_outbox;"
                           " delete from dramatiq.queue where queue_name = 'clicks'")
        await conn.close()


def _settings(dsn: str) -> config.Settings:
    return config.Settings(database_url=dsn, broker_url="").derived()


async def _begin_close(owner: asyncpg.Connection) -> None:
    """What merci.close.start records (without its checks: they are the subject here)."""
    await owner.execute("insert into month_closes (period, shards, bounds, currency, default_budget)"
                        " values ($1, 1, '{0}', 'EUR', 500)", period_of(datetime.now(UTC)))


async def _queued(owner: asyncpg.Connection, key: str) -> int:
    n: int = await owner.fetchval(
        "select (select count(*) from dramatiq.queue q, jsonb_array_elements(q.message->'args'->0) c"
        "         where q.queue_name = 'clicks' and c->>4 = $1)"
        "     + (select count(*) from click_outbox o, jsonb_array_elements(o.batch) c where c->>4 = $1)", key)
    return n


async def _receipt(owner: asyncpg.Connection, world: TenantWorld, key: str) -> str | None:
    refusal: str | None = await owner.fetchval("select coalesce(refusal, 'PENDING') from click_receipts"
                                               " where supporter_id = $1 and idempotency_key = $2",
                                               world.supporter_id, key)
    return refusal


@pytest.mark.parametrize("outbox", [False, True], ids=["postgres-broker", "outbox"])
async def test_a_close_begun_after_the_checks_refuses_the_batch(race_db: str, owner: asyncpg.Connection,
                                                                outbox: bool) -> None:
    settings = _settings(race_db)
    world = await make_tenant_world(owner)
    queue = Queue(make_broker("", race_db), database_url=settings.app_database_url)

    async def send(batch: list[list[Any]], signature: str, outbox_id: str | None) -> None:
        await queue.asend(INGEST_ACTOR, batch, signature, *([] if outbox_id is None else [outbox_id]),
                          queue_name=CLICK_QUEUE)

    batcher = PrecheckBatcher(settings.app_database_url, currency="EUR",
                              handoff=Handoff(send, secret=SECRET, outbox=outbox))

    def click(key: str) -> Any:
        return batcher.submit(check_request(supporter_id=world.supporter_id, tenant_id=world.tenant_id,
                                            thing_id=None, url=f"https://{world.slug}.example/{key}",
                                            idempotency_key=key))

    checked = batcher._check

    async def checks_then_the_close_begins(*args: Any) -> Any:
        results = await checked(*args)
        await _begin_close(owner)  # in the very instant after the checks
        return results

    try:
        assert isinstance(await click("before"), Accepted)  # a positive control
        # (its message, and with an outbox its row too)
        assert await _queued(owner, "before") == 1 + outbox and await _receipt(owner, world, "before") == "PENDING"
        batcher._check = checks_then_the_close_begins  # type: ignore[method-assign, assignment]
        with pytest.raises(UserError) as refused:
            await click("during")
        assert refused.value.code == "MONTH_CLOSED"
        assert await _queued(owner, "during") == 0  # nothing for the workers to refuse later
        assert await _receipt(owner, world, "during") == "MONTH_CLOSED"
    finally:
        await batcher.close()
        await queue.aclose()
        queue.close()


def _batch(world: TenantWorld, key: str) -> list[list[Any]]:
    return [[world.supporter_id, world.tenant_id, world.thing_id, None, key, datetime.now(UTC).isoformat(), "click"]]


async def test_a_write_waits_for_a_close_that_holds_the_month(race_db: str, owner: asyncpg.Connection) -> None:
    """The close took the month's lock first and has not committed yet: the write waits,
    then sees the close's row (a statement after the lock, a new snapshot) and is refused."""
    settings = _settings(race_db)
    world = await make_tenant_world(owner)
    app = await asyncpg.connect(settings.app_database_url)
    try:
        await app.execute("select set_config('merci.tenant_id', $1, false)", str(world.tenant_id))
        closing = owner.transaction()
        await closing.start()
        await owner.execute("select pg_advisory_xact_lock($1, $2)", locks.MONTH,
                            month_key(period_of(datetime.now(UTC))))
        await _begin_close(owner)
        batch = _batch(world, "waits")
        write = asyncio.ensure_future(app.execute(
            "insert into click_outbox (id, tenant_id, batch, signature) values (gen_random_uuid(), $1, $2::jsonb, $3)",
            world.tenant_id, orjson.dumps(batch).decode(), sign_batch(batch, SECRET)))
        await asyncio.sleep(0.5)
        assert not write.done(), "the write must wait for the close's lock"
        await closing.commit()
        with pytest.raises(asyncpg.PostgresError) as refused:
            await write
        assert month_closing(refused.value), refused.value
    finally:
        await app.close()


async def test_a_close_waits_for_a_write_that_holds_the_month(race_db: str, owner: asyncpg.Connection) -> None:
    """The write came first: the close waits for it to commit, then finds its click waiting
    and does not begin (ClicksQueued); the same for a message a worker has taken."""
    settings = _settings(race_db)
    world = await make_tenant_world(owner)
    system = await asyncpg.connect(settings.system_database_url)
    writer = await asyncpg.connect(settings.app_database_url)  # the API's role: its outbox rows
    await writer.execute("select set_config('merci.tenant_id', $1, false)", str(world.tenant_id))
    period = period_of(datetime.now(UTC))

    def start() -> Any:
        return close.start(system, period=period, shards=1, currency="EUR", default_budget=500)

    try:
        writing = writer.transaction()
        await writing.start()
        batch = _batch(world, "first")
        await writer.execute("insert into click_outbox (id, tenant_id, batch, signature)"
                             " values (gen_random_uuid(), $1, $2::jsonb, $3)",
                             world.tenant_id, orjson.dumps(batch).decode(), sign_batch(batch, SECRET))
        starting = asyncio.ensure_future(start())
        await asyncio.sleep(0.5)
        assert not starting.done(), "the close must wait for the write's lock"
        await writing.commit()
        with pytest.raises(close.ClicksQueued):
            await starting
        await owner.execute("delete from click_outbox")

        # A message a worker has taken (prefetched, or being ingested) counts as waiting.
        message = {"queue_name": "clicks", "actor_name": INGEST_ACTOR, "args": [batch, sign_batch(batch, SECRET)],
                   "kwargs": {}, "options": {}, "message_id": "00000000-0000-0000-0000-000000000017",
                   "message_timestamp": 0}
        await owner.execute("insert into dramatiq.queue (queue_name, message_id, state, message)"
                             " values ('clicks', $1::uuid, 'consumed', $2::text::jsonb)",
                             message["message_id"], orjson.dumps(message).decode())
        with pytest.raises(close.ClicksQueued):
            await start()
        await owner.execute("delete from dramatiq.queue where message_id = $1::uuid", message["message_id"])
        assert (await start())["period"] == period  # a positive control: nothing waits, it begins
    finally:
        await writer.close()
        await system.close()
