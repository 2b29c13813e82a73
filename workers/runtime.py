"""Each worker thread runs async actor bodies on one event loop per thread, with
its own pool of merci_system connections."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from merci.db import create_pool

T = TypeVar("T")
_local = threading.local()


def _loop() -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None:
        loop = asyncio.new_event_loop()
        _local.loop = loop
    return loop


def run(body: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    from workers import settings

    loop = _loop()

    async def main() -> T:
        pool: asyncpg.Pool | None = getattr(_local, "pool", None)
        if pool is None:
            # Named after the process: pg_stat_activity and pg_locks tell which worker holds what.
            dsn = settings.system_database_url
            name = f"application_name=merci-worker-{os.getpid()}"
            pool = await create_pool(f"{dsn}{'&' if '?' in dsn else '?'}{name}", max_size=4)
            _local.pool = pool
        return await body(pool)

    return loop.run_until_complete(main())


def run_async(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    return _loop().run_until_complete(fn(*args))
