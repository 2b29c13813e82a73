"""An API app served in the test's own process, with every statement of its pool counted
(asyncpg's query loggers, on each connection the app opens)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx

import merci.db
from merci.config import Settings
from runtime.faces import app


class Statements:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, record: Any) -> None:
        self.n += 1


@asynccontextmanager
async def counted_app(settings: Settings, client: tuple[str, int] = ("127.0.0.1", 1)
                      ) -> AsyncIterator[tuple[httpx.AsyncClient, Statements]]:
    """`merci serve all`'s app on `settings`, an HTTP client to it, and its statements' count
    (a logger calls back soon after each statement: let the loop turn before reading it)."""
    statements = Statements()
    original = merci.db._init_connection

    async def init(conn: asyncpg.Connection) -> None:
        await original(conn)
        conn.add_query_logger(statements)

    merci.db._init_connection = init  # type: ignore[assignment]
    try:
        face = app(settings, "all")
        async with face.router.lifespan_context(face), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=face, client=client), base_url="http://test") as http:
            yield http, statements
    finally:
        merci.db._init_connection = original  # type: ignore[assignment]
