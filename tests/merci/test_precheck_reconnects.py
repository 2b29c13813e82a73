"""Connections PostgreSQL cut while they sat idle (a restart, issue 17): the next statement
fails with "connection was closed", or, when asyncpg has read the server's goodbye but not
yet seen the socket close, with InternalClientError ("another operation (2) is in
progress"), which the API answered with a bare 500. The click checks run again on a new
connection; a request that took such a connection from the pool meets an outage
(merci.errors.unavailable: 503 UNAVAILABLE). Which of the two a kill gives is a race, so
each is tried a number of times."""

from __future__ import annotations

import asyncio

import asyncpg

from merci import config
from merci.clicks import Accepted, ClickRequest, PrecheckBatcher, check_request
from merci.db import Scope, create_pool, scoped
from merci.errors import unavailable
from tests.factories import make_tenant_world


async def test_the_checks_survive_their_connection_cut_while_idle(database_url: str,
                                                                  settings: config.Settings) -> None:
    owner = await asyncpg.connect(database_url)
    batcher = PrecheckBatcher(settings.app_database_url, currency="EUR")
    try:
        world = await make_tenant_world(owner)

        def request(i: int) -> ClickRequest:
            return check_request(supporter_id=world.supporter_id, tenant_id=world.tenant_id, thing_id=None,
                                 url=f"https://{world.slug}.example/cut/{i}", idempotency_key=f"cut-{i}")

        assert isinstance(await batcher.submit(request(0)), Accepted)
        for i in range(1, 21):
            assert batcher.conn is not None
            # (as a restart's fast shutdown does: the backend is told to end and says so)
            await owner.fetchval("select pg_terminate_backend($1)", batcher.conn.get_server_pid())
            answer = await batcher.submit(request(i))  # at once, as the next click would
            assert isinstance(answer, Accepted), answer
            await asyncio.sleep(0)
    finally:
        await batcher.close()
        await owner.close()


async def test_a_pooled_connection_cut_while_idle_is_an_outage(database_url: str, settings: config.Settings) -> None:
    owner = await asyncpg.connect(database_url)
    pool = await create_pool(settings.app_database_url, max_size=1)
    failures: list[BaseException] = []
    try:
        for _ in range(20):
            async with pool.acquire() as conn:
                pid = conn.get_server_pid()
            await owner.fetchval("select pg_terminate_backend($1)", pid)
            try:
                async with scoped(pool, Scope(1)) as conn:  # as authentication's lookup does
                    await conn.fetchval("select 1")
            except Exception as exc:  # noqa: BLE001  (each is looked at below)
                failures.append(exc)
    finally:
        await pool.close()
        await owner.close()
    assert failures  # a positive control: the cut was met
    assert [f for f in failures if unavailable(f) is None] == []
