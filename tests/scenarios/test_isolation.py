"""Through GraphQL, tenant A's API key sees A's data and others' public data,
never B's private data: every root field is crawled, and node(id:) is tried on
each of B's ids."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from merci.ids import to_global
from tests.conftest import GraphQLClient
from tests.factories import TenantWorld, make_tenant_world

INTROSPECT = """{ __schema { queryType { name } types { name kind
  fields { name args { name type { kind ofType { kind ofType { kind } } } }
           type { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }"""


def _named(t: dict[str, Any]) -> tuple[str, str]:
    while t.get("ofType"):
        t = t["ofType"]
    return t["kind"], t["name"]


def askable(types: dict[str, Any], type_name: str) -> Iterator[tuple[dict[str, Any], str, str]]:
    """(field, kind, named type) of each field a crawl may ask for: no required argument."""
    for f in types[type_name]["fields"] or []:
        if not f["name"].startswith("_") and not any(a["type"]["kind"] == "NON_NULL" for a in f["args"]):
            yield (f, *_named(f["type"]))


def selection(types: dict[str, Any], type_name: str, depth: int) -> str:
    """All fields without required arguments, `depth` levels down."""
    parts = []
    for f, kind, name in askable(types, type_name):
        if kind in ("SCALAR", "ENUM"):
            parts.append(f["name"])
        elif depth > 0 and kind in ("OBJECT", "INTERFACE"):
            inner = selection(types, name, depth - 1)
            if kind == "INTERFACE":
                inner = "__typename " + inner
            if inner:
                parts.append(f"{paged(f)} {{ {inner} }}")
    return " ".join(parts)


def crawl(client: GraphQLClient, types: dict[str, Any], path: list[str], type_name: str, depth: int) -> list[str]:
    """The answers to everything below `path` (fields without required arguments, `depth`
    levels down): in one request, or, where that costs more than a request may
    (MAX_COST_EXCEEDED, graph.cost), field by field as a client must."""
    def ask(inner: str) -> dict[str, Any]:
        query = inner
        for name in reversed(path):
            query = "%s { %s }" % (name, query)
        body: dict[str, Any] = client.raw("{ %s }" % query).json()
        return body

    everything = selection(types, type_name, depth)
    if not everything:
        return []
    body = ask(everything)
    if [e.get("extensions", {}).get("code") for e in body.get("errors", ())] != ["MAX_COST_EXCEEDED"]:
        assert "errors" not in body, (path, body)
        return [json.dumps(body)]
    answers = []
    scalars = selection(types, type_name, 0)
    if scalars:
        body = ask(scalars)
        assert "errors" not in body, (path, body)
        answers.append(json.dumps(body))
    for f, kind, name in askable(types, type_name):
        if depth > 0 and kind in ("OBJECT", "INTERFACE"):
            answers += crawl(client, types, [*path, paged(f)], name, depth - 1)
    return answers


def paged(field: dict[str, Any]) -> str:
    """A field as the crawl asks for it: a list of a few (the cost of a request grows with
    each page asked for, graph.cost)."""
    return f"{field['name']}(first: 3)" if any(a["name"] == "first" for a in field["args"]) else field["name"]


@pytest.fixture(scope="module")
async def worlds(system_pool: asyncpg.Pool) -> tuple[TenantWorld, TenantWorld]:
    async with system_pool.acquire() as conn:
        return await make_tenant_world(conn), await make_tenant_world(conn)


async def b_secrets(pool: asyncpg.Pool, b: TenantWorld) -> list[str]:
    async with pool.acquire() as conn:
        emails = [r["email"] for r in await conn.fetch(
            "select email from account_private where tenant_id = $1", b.tenant_id)]
        url = await conn.fetchval("select url from sites where id = $1", b.site_private_id)
    return [*emails, url, b.api_key, b.api_key[-4:] + '"', to_global("ApiKey", b.api_key_id),
            to_global("Account", b.supporter_id), to_global("Site", b.site_private_id)]


async def test_api_key_of_a_never_sees_b(api_url: str, system_pool: asyncpg.Pool,
                                         worlds: tuple[TenantWorld, TenantWorld]) -> None:
    a, b = worlds
    client = GraphQLClient(api_url, token=a.api_key)
    schema = client(INTROSPECT)["__schema"]
    types = {t["name"]: t for t in schema["types"]}
    secrets = await b_secrets(system_pool, b)
    seen: list[str] = []
    for field, kind, name in askable(types, schema["queryType"]["name"]):
        if kind in ("OBJECT", "INTERFACE"):
            seen += crawl(client, types, [paged(field)], name, 3)
        else:
            body = client.raw("{ %s }" % field["name"]).json()
            assert "errors" not in body, (field["name"], body)
            seen.append(json.dumps(body))
    text = "\n".join(seen)
    assert seen, "crawled nothing"
    for secret in secrets:
        assert secret not in text

    # node(id:) on every one of B's ids: private ones are null, public ones visible.
    node_sel = selection(types, "Node", 0)
    fragments = " ".join(
        f"... on {t['name']} {{ {selection(types, t['name'], 1)} }}"
        for t in schema["types"]
        if t["kind"] == "OBJECT" and t["name"] in ("Account", "ApiKey", "Site", "Tenant", "Creator"))
    private = {"ApiKey": b.api_key_id, "Account": b.supporter_id, "Site": b.site_private_id}
    for type_name, pk in private.items():
        body = client.raw("query($id: ID!) { node(id: $id) { %s %s } }" % (node_sel, fragments),
                          {"id": to_global(type_name, pk)}).json()
        assert body["data"] == {"node": None} and "errors" not in body, (type_name, body)
    public = client("query($id: ID!) { node(id: $id) { id } }", {"id": to_global("Site", b.site_public_id)})
    assert public["node"] is not None  # a listed site is public: the test can tell the difference


async def test_own_tenant_admin_sees_own_keys_only(api_url: str, system_pool: asyncpg.Pool,
                                                   worlds: tuple[TenantWorld, TenantWorld]) -> None:
    a, b = worlds
    async with system_pool.acquire() as conn:
        from datetime import timedelta

        from merci.accounts import issue_token
        from merci.db import Scope, set_scope

        async with conn.transaction():
            await set_scope(conn, Scope(a.tenant_id))
            token = await issue_token(conn, tenant_id=a.tenant_id, account_id=a.admin_id, ttl=timedelta(hours=1))
    admin = GraphQLClient(api_url, token=token)
    keys = admin("{ apiKeys(first: 10) { edges { node { id name } } } }")["apiKeys"]["edges"]
    assert [k["node"]["id"] for k in keys] == [to_global("ApiKey", a.api_key_id)]
    assert admin("query($id: ID!) { node(id: $id) { id } }",
                 {"id": to_global("ApiKey", b.api_key_id)})["node"] is None
