"""Shared benchmark plumbing: a fresh database on DATABASE_URL (or an embedded
server), timing, and the ratio printout."""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from merci.config import with_database
from merci.db import migrate


@contextmanager
def server() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    from runtime.embedded import EmbeddedPostgres

    pg = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="merci-bench-")))
    try:
        yield pg.uri
    finally:
        pg.stop()


@contextmanager
def fresh_database(server_url: str, prefix: str = "merci_bench") -> Iterator[str]:
    name = f"{prefix}_{secrets.token_hex(3)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    dsn = with_database(server_url, name)
    try:
        asyncio.run(migrate(dsn))
        yield dsn
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def report(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    print(f"\n== {title} ==")
    for k, v in rows:
        print(f"  {k.ljust(width)}  {v}")
