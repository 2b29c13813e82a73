"""Entity references, as the gateway sends them (`_entities`), resolve in one SQL
statement per entity type however many there are, and under the caller's RLS scope:
a site the caller may not see resolves to null."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from graph.context import Context
from merci.accounts import Principal
from merci.config import Settings
from merci.ids import to_global
from runtime.faces import build_schema
from tests.directory.helpers import listed_site, new_tenant, person


class Counting:
    """An asyncpg pool whose connections count the queries that read rows."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.statements: list[str] = []

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        async with self.pool.acquire() as conn:
            yield _Conn(conn, self.statements)


class _Conn:
    def __init__(self, conn: asyncpg.Connection, log: list[str]) -> None:
        self._conn, self._log = conn, log

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._conn, name)
        if name in ("fetch", "fetchrow", "fetchval"):
            async def counted(sql: str, *args: Any) -> Any:
                self._log.append(sql)
                return await attr(sql, *args)
            return counted
        return attr


@pytest.fixture(scope="module")
async def world(system_pool: asyncpg.Pool) -> dict[str, Any]:
    async with system_pool.acquire() as conn:
        tid, _ = await new_tenant(conn)
        owner = await person(conn, tid, "creator")
        sites = [await listed_site(conn, tid, owner, title=f"Entity {i}") for i in range(25)]
        other_tid, _ = await new_tenant(conn)
        other_owner = await person(conn, other_tid, "creator")
        hidden = await conn.fetchval(
            "insert into sites (tenant_id, owner_id, url, host, verification_token) values ($1, $2,"
            " 'https://hidden-entity.example/', 'hidden-entity.example', 'tok') returning id", other_tid, other_owner)
    return {"tenant": tid, "owner": owner, "sites": sites, "hidden": hidden}


async def run(face: str, query: str, reps: list[dict[str, str]], pool: Counting, settings: Settings,
              tenant_id: int) -> list[Any]:
    context = Context(request=None, response=None, principal=Principal(tenant_id=tenant_id),  # type: ignore[arg-type]
                      pool=pool, settings=settings)  # type: ignore[arg-type]
    result = await build_schema(face).execute(query, variable_values={"r": reps}, context_value=context)  # type: ignore[arg-type]
    assert result.errors is None, result.errors
    assert result.data is not None
    return list(result.data["_entities"])


SITES = "query($r: [_Any!]!) { _entities(representations: $r) { ... on Site { id %s } } }"


async def test_api_resolves_site_references_in_one_statement_each(
    app_pool: asyncpg.Pool, settings: Settings, world: dict[str, Any]
) -> None:
    reps = [{"__typename": "Site", "id": to_global("Site", s)} for s in [*world["sites"], world["hidden"], 10**12]]
    pool = Counting(app_pool)
    found = await run("api", SITES % "clicksThisMonth", reps, pool, settings, world["tenant"])
    assert [f["id"] for f in found[:25]] == [to_global("Site", s) for s in world["sites"]]
    assert found[25:] == [None, None]  # another tenant's unlisted site; a site that does not exist
    # One statement checks that all 27 may be seen, one counts the clicks of the 25.
    assert len(pool.statements) == 2, pool.statements


async def test_directory_resolves_site_and_creator_references_in_one_statement_each(
    app_pool: asyncpg.Pool, settings: Settings, world: dict[str, Any]
) -> None:
    reps = [{"__typename": "Site", "id": to_global("Site", s)} for s in [*world["sites"], world["hidden"]]]
    pool = Counting(app_pool)
    found = await run("directory", SITES % "title owner { id }", reps, pool, settings, world["tenant"])
    assert [f["title"] for f in found[:25]] == [f"Entity {i}" for i in range(25)] and found[25] is None
    assert len(pool.statements) == 2, pool.statements  # sites, then their owners
    creators = [{"__typename": "Creator", "id": to_global("Creator", world["owner"])} for _ in range(30)]
    pool = Counting(app_pool)
    found = await run("directory", "query($r: [_Any!]!) { _entities(representations: $r) { ... on Creator { id } } }",
                      creators, pool, settings, world["tenant"])
    assert len(found) == 30 and len(pool.statements) == 1


@pytest.mark.parametrize("face", ["all", "api", "directory"])
async def test_a_fragment_on_another_entity_type_does_not_apply(
    face: str, app_pool: asyncpg.Pool, settings: Settings, world: dict[str, Any]
) -> None:
    """A Site reference read through `... on Creator` answers the Site's own fields only
    (a bug: the merged schema took the Site for a Creator and failed on `handle`)."""
    site = world["sites"][0]
    reps = [{"__typename": "Site", "id": to_global("Site", site)},
            {"__typename": "Creator", "id": to_global("Creator", world["owner"])}]
    field = "sites { totalCount }" if face == "directory" else "handle"  # a field Site does not have
    query = "query($r: [_Any!]!) { _entities(representations: $r) { __typename ... on Creator { %s } } }" % field
    got = await run(face, query, reps, Counting(app_pool), settings, world["tenant"])
    assert got[0] == {"__typename": "Site"}
    assert got[1]["__typename"] == "Creator" and got[1][field.split()[0]]


async def test_node_answers_each_entity_as_its_own_type(app_pool: asyncpg.Pool, settings: Settings,
                                                        world: dict[str, Any]) -> None:
    """The merged schema's `node` resolves a Site as a Site and a Creator as a Creator."""
    context = Context(request=None, response=None, principal=Principal(tenant_id=world["tenant"]),  # type: ignore[arg-type]
                      pool=app_pool, settings=settings)  # type: ignore[arg-type]
    query = ("query($s: ID!, $c: ID!) { s: node(id: $s) { __typename ... on Creator { handle } }"
             " c: node(id: $c) { __typename ... on Creator { handle } } }")
    result = await build_schema("all").execute(query, context_value=context, variable_values={  # type: ignore[arg-type]
        "s": to_global("Site", world["sites"][0]), "c": to_global("Creator", world["owner"])})
    assert result.errors is None, result.errors
    assert result.data is not None and result.data["s"] == {"__typename": "Site"}
    assert result.data["c"]["__typename"] == "Creator" and result.data["c"]["handle"]
