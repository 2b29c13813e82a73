"""Query cost (issue 16): priced before it runs, refused above the limit with nothing run,
reported in extensions.cost, a caller's budget spent and refilled (THROTTLED with
Retry-After), and a statement that runs too long answered as STATEMENT_TIMEOUT."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from graphql import GraphQLList, GraphQLNonNull, GraphQLObjectType, get_named_type, parse

from graph.cost import FREE, LIST_SIZES, Pricer, is_connection
from merci.config import Settings
from runtime.faces import build_schema
from tests.counting import Statements, counted_app

SCHEMA = build_schema("all")._schema
ROOT = Path(__file__).resolve().parents[2]


def price(query: str, variables: dict[str, Any] | None = None) -> int:
    return Pricer(SCHEMA, parse(query), None, variables).requested()


def test_the_model() -> None:
    assert price("{ defaultBudget { minor } }") == 0  # a value, as a scalar
    assert price("{ creator(handle: \"x\") { handle } }") == 1
    # A connection: 1, and its page times a node (edges and pageInfo free); default page 20.
    assert price("{ sites { nodes { id } } }") == 1 + 20
    assert price("{ sites(first: 5) { edges { node { id owner { handle } } } pageInfo { hasNextPage } } }") \
        == 1 + 5 * 2
    # Multiplied through nesting, variables resolved, aliases each counted.
    q = "query($n: Int) { creator(handle: \"x\") { things(first: $n) { nodes { owner { things(first: $n) {" \
        " nodes { id } } } } } } }"
    assert price(q, {"n": 100}) == 1 + 1 + 100 * (1 + 1 + 1 + 100)
    assert price("{ a: sites(first: 2) { nodes { id } } b: sites(first: 3) { nodes { id } } }") == 3 + 4
    # Fragments expanded; skip and include obeyed; `last` as `first`.
    assert price("query { sites(last: 4) { ...F } } fragment F on SiteConnection { nodes { owner { id } } }") \
        == 1 + 4 * 2
    assert price("query($s: Boolean!) { sites(first: 4) { nodes { owner @skip(if: $s) { id } } } }",
                 {"s": True}) == 1 + 4
    # Lists by their declared size; a mutation 10 more; introspection free.
    assert price("{ categories { name } }") == LIST_SIZES["Query.categories"]
    assert price("mutation { logOut { ok } }") == 10 + 1
    assert price("{ __schema { types { fields { name } } } }") == 0


def test_every_list_of_objects_has_a_declared_size() -> None:
    undeclared = []
    for type_ in SCHEMA.type_map.values():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__") or is_connection(type_):
            continue
        for name, field in type_.fields.items():
            inner = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
            if isinstance(inner, GraphQLList) and isinstance(get_named_type(inner), GraphQLObjectType) \
                    and get_named_type(inner).name not in FREE and f"{type_.name}.{name}" not in LIST_SIZES \
                    and name not in ("_entities", "edges", "nodes"):
                undeclared.append(f"{type_.name}.{name}")
    assert undeclared == []


def test_the_frontend_s_operations_cost_less_than_the_limit() -> None:
    """The web app's and the gateway replay's documents (every root field): each under 1000."""
    files = [*(ROOT / "tests" / "gateway" / "operations").glob("*.graphql")]
    assert files  # positive control
    for path in files:
        document = parse(path.read_text())
        for definition in document.definitions:
            name = getattr(getattr(definition, "name", None), "value", None)
            if getattr(definition, "operation", None) is None:
                continue
            cost = Pricer(SCHEMA, document, name, {}).requested()
            assert cost <= Settings().query_cost_limit, (path.name, name, cost)


@pytest.fixture(scope="module")
async def served(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Statements]]:
    small = replace(settings, query_cost_limit=300, query_cost_bucket=400, query_cost_restore_rate=20,
                    statement_timeout_ms=300, trusted_proxies=("203.0.113.9/32",))  # (each test's address its own)
    async with counted_app(small, ("203.0.113.9", 1)) as pair:
        yield pair


async def post(client: httpx.AsyncClient, query: str, ip: str = "203.0.113.9") -> httpx.Response:
    return await client.post("/graphql", json={"query": query}, headers={"x-forwarded-for": ip})


async def test_over_cost_refused_with_nothing_run(served: tuple[httpx.AsyncClient, Statements]) -> None:
    client, statements = served
    await post(client, "{ defaultBudget { minor } }")  # (tenant and caches warm)
    await asyncio.sleep(0.01)
    before = statements.n
    r = await post(client, "{ sites(first: 100) { nodes { things(first: 100) { nodes { id } } } } }")
    await asyncio.sleep(0.01)
    body = r.json()
    assert r.status_code == 200 and body["data"] is None
    [error] = body["errors"]
    assert error["extensions"] == {"code": "MAX_COST_EXCEEDED", "cost": 1 + 100 * (1 + 1 + 100), "maxCost": 300}
    assert "10201" in error["message"] and "300" in error["message"]
    assert statements.n == before  # nothing ran
    assert body["extensions"]["cost"]["requestedQueryCost"] == 10201


async def test_cost_reported_requested_and_actual(served: tuple[httpx.AsyncClient, Statements]) -> None:
    client, _ = served
    r = await post(client, "{ sites(first: 50) { nodes { id owner { handle } } } }", ip="203.0.113.10")
    body = r.json()
    cost = body["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 1 + 50 * 2
    listed = len(body["data"]["sites"]["nodes"])
    assert cost["actualQueryCost"] == 1 + listed * 2 <= cost["requestedQueryCost"]
    status = cost["throttleStatus"]
    assert status["maximumAvailable"] == 400 and status["restoreRate"] == 20
    # What was not spent went back: the bucket holds its size less the actual cost (and a refill).
    assert 400 - cost["actualQueryCost"] <= status["currentlyAvailable"] <= 400


async def test_budget_spent_then_throttled_with_retry_after(served: tuple[httpx.AsyncClient, Statements]) -> None:
    client, _ = served
    query = "{ sites(first: 100) { nodes { id owner { id } } } }"  # requested 201, under the limit of 300
    ip = "203.0.113.11"
    # The requested cost is taken before a request runs (what is not spent comes back after):
    # three at once need 603 of the caller's 400.
    answers = await asyncio.gather(*(post(client, query, ip) for _ in range(3)))
    refused = [a for a in answers if "errors" in a.json()]
    assert 1 <= len(refused) <= 2, [a.json().get("extensions") for a in answers]
    body = refused[0].json()
    [error] = body["errors"]
    assert error["extensions"]["code"] == "THROTTLED" and body["data"] is None
    assert int(refused[0].headers["retry-after"]) == error["extensions"]["retryAfter"] >= 1
    assert body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] < 201
    # Another caller's budget is its own.
    other = await post(client, query, "203.0.113.12")
    assert "errors" not in other.json()


async def test_a_statement_past_the_timeout_is_answered_clearly(served: tuple[httpx.AsyncClient, Statements],
                                                               settings: Settings) -> None:
    client, _ = served
    conn = await asyncpg.connect(settings.database_url)
    try:
        async with conn.transaction():
            await conn.execute("lock table sites in access exclusive mode")  # the API's read waits on it
            r = await post(client, "{ sites(first: 1) { nodes { id } } }", ip="203.0.113.13")
    finally:
        await conn.close()
    assert r.status_code == 200
    [error] = r.json()["errors"]
    assert error["extensions"]["code"] == "STATEMENT_TIMEOUT"
    assert "300 ms" in error["message"]
