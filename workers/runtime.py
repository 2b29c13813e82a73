"""One event loop per worker process, alive for the process's life, with its pool of
merci_system connections; actor bodies run on it from Dramatiq's worker threads.

Each thread used to run a loop of its own only while it handled a message. Whatever the
loop was doing when the body returned stopped with it: asyncpg restoring its pool's floor
after a lost connection stayed half-way through logging in, and PostgreSQL waited
authentication_timeout (60 s) for that connection on every shutdown, refusing everyone
meanwhile. On a loop that keeps running, a reconnect finishes or fails, a dropped
connection is noticed when PostgreSQL drops it, and a body stopped from outside (a time
limit, the worker's shutdown) is cancelled on the loop, which cleans up after it.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import asyncpg
import dramatiq
import structlog

from merci.db import Pool, create_pool

T = TypeVar("T")
log = structlog.get_logger("merci.workers.runtime")


class Runtime:
    """The process's loop (on a thread of its own) and pool, made on first use."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.pool: Pool | None = None
        self.opening: asyncio.Lock | None = None
        self.pool_size = 4  # the worker's thread count, once it has booted (EventLoop)

    def running_loop(self) -> asyncio.AbstractEventLoop:
        with self.lock:
            # (A forked child gets the parent's objects but not its thread: it makes its own.)
            if self.loop is None or self.pid != os.getpid():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="merci-event-loop", daemon=True)
                thread.start()
                self.loop, self.thread, self.pid, self.pool, self.opening = loop, thread, os.getpid(), None, None
            return self.loop

    async def connections(self) -> Pool:
        if self.pool is None:
            self.opening = self.opening or asyncio.Lock()
            async with self.opening:
                if self.pool is None:
                    from workers import settings

                    # Named after the process: pg_stat_activity and pg_locks tell which worker holds what.
                    dsn = settings.system_database_url
                    name = f"application_name=merci-worker-{os.getpid()}"
                    self.pool = await create_pool(f"{dsn}{'&' if '?' in dsn else '?'}{name}",
                                                  max_size=max(self.pool_size, 1),
                                                  connect_timeout=settings.db_connect_timeout,
                                                  acquire_timeout=settings.db_acquire_timeout)
        return self.pool

    def submit(self, work: Awaitable[T]) -> T:
        """Run `work` on the loop and wait for it from this (worker) thread."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(work, self.running_loop())  # type: ignore[arg-type]
        try:
            return future.result()
        except BaseException:
            # Dramatiq stops a thread by raising in it (TimeLimitExceeded, Shutdown): the
            # body is cancelled on the loop, which goes on running and releases what it held.
            future.cancel()
            raise

    def close(self, timeout: float = 10.0) -> None:
        """Close the pool and stop the loop (the worker's shutdown)."""
        with self.lock:
            loop, pool, thread = self.loop, self.pool, self.thread
            if loop is None or self.pid != os.getpid():
                return
            self.loop = self.pool = self.thread = None

        async def closing() -> None:
            if pool is not None:
                try:
                    await asyncio.wait_for(pool.close(), timeout)
                except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    pool.terminate()

        try:
            asyncio.run_coroutine_threadsafe(closing(), loop).result(timeout + 1)
        except Exception as exc:  # closing is best effort: the process is ending
            log.warning("worker pool not closed cleanly", error=repr(exc))
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout)


runtime = Runtime()


def run(body: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    """An actor's body, on the process's loop with its pool."""

    async def main() -> T:
        return await body(await runtime.connections())

    return runtime.submit(main())


def run_async(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    return runtime.submit(fn(*args))


class EventLoop(dramatiq.Middleware):
    """Sizes the pool to the worker's threads (each holds one connection at a time, so a
    worker pod still holds about `--threads` connections), and closes it on shutdown."""

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        runtime.pool_size = int(getattr(worker, "worker_threads", runtime.pool_size))

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        runtime.close()
