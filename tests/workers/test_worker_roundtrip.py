"""A real broker and worker process: a message sent through merci.queue runs."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import asyncpg
import pytest

from merci.queue import Queue, make_broker
from tests.conftest import Service, need, service_env, unique


@pytest.mark.parametrize("kind", ["postgres", "redis", "rabbitmq"])
async def test_ping_through_worker(kind: str, database_url: str, system_pool: asyncpg.Pool,
                                   tmp_path: Path) -> None:
    urls = {"postgres": "", "redis": os.environ.get("REDIS_URL", ""), "rabbitmq": os.environ.get("AMQP_URL", "")}
    need(kind == "postgres" or bool(urls[kind]), f"{kind} broker: set {'REDIS_URL' if kind == 'redis' else 'AMQP_URL'}")
    env = service_env(database_url, BROKER_URL=urls[kind])
    worker = Service([sys.executable, "-m", "dramatiq", "workers", "--processes", "1", "--threads", "2"],
                     env, tmp_path / "worker.log")
    try:
        queue = Queue(make_broker(urls[kind], database_url))
        marker = unique(f"ping-{kind}-")
        queue.send("system.ping", marker)
        queue.close()
        for _ in range(300):
            async with system_pool.acquire() as conn:
                if await conn.fetchval("select 1 from worker_pings where marker = $1", marker):
                    break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("ping not processed:\n" + worker.output()[-3000:])
    finally:
        assert worker.stop() in (0, -15), worker.output()[-3000:]
