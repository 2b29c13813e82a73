from __future__ import annotations

import asyncpg

from merci.db import migrate, migration_files
from tests.conftest import create_database, drop_database


async def test_migrations_apply_to_empty_database_then_noop(server_url: str) -> None:
    dsn = create_database(server_url, "merci_migr")
    try:
        first = await migrate(dsn)
        assert first == [v for v, _ in migration_files()]
        assert await migrate(dsn) == []
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("select slug from tenants") == "merci"
            assert await conn.fetchval("select count(*) from schema_migrations") == len(first)
        finally:
            await conn.close()
    finally:
        drop_database(server_url, dsn)


def test_migration_files_are_ordered_and_unique() -> None:
    versions = [v for v, _ in migration_files()]
    assert versions == sorted(versions)
    assert len({v[:4] for v in versions}) == len(versions)
