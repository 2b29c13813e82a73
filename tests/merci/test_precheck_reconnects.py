"""The API's click checks after PostgreSQL cut their idle connection (a restart, issue 17):
the next statement failed with "connection was closed" (answered UNAVAILABLE, though the
server was up) or, when asyncpg had read the server's goodbye but not yet seen the socket
close, with InternalClientError ("another operation is in progress"), answered with a
bare 500. The batcher checks the clicks again on a new connection. Which of the two a
kill gives is a race, so it is tried a number of times."""

from __future__ import annotations

import asyncio

import asyncpg

from merci import config
from merci.clicks import Accepted, ClickRequest, PrecheckBatcher, check_request
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
