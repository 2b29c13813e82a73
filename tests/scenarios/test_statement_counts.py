"""No root field's statement count grows with the page size (issue 16).

Every statement the API's pool runs is counted (asyncpg's query loggers, added to each
connection the app opens), and each root field that reaches a connection below its own
is asked for the same nested document at first: 2 and at first: 50, on a world with more
than 50 rows in every list: the two must run the same number of statements (give or take
one transaction: see the test). A nested
connection read once per parent (a creator's things under each thing's owner) ran a
statement per parent: 10,100 for one request before. Positive controls: the pages really
are 2 and 50 long (so the equality cannot come from empty lists), and every root field
whose type reaches a connection is in the table (the schema is read for it).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from graphql import GraphQLList, GraphQLNonNull, GraphQLObjectType, get_named_type

from merci import tenants, webhooks
from merci.accounts import issue_token
from merci.config import Settings
from merci.db import Scope, set_scope
from merci.ids import to_global
from runtime.faces import build_schema
from tests import factories as f
from tests.counting import Statements, counted_app

N = 55  # rows in every list: more than the larger page

THINGS = "things(first: $n) { totalCount nodes { id title clicksThisMonth owner { handle } } }"
SITES = f"sites(first: $n) {{ totalCount nodes {{ id title clicksThisMonth owner {{ handle }} {THINGS} }} }}"
CREATOR = f"id handle {THINGS} {SITES}"
# Each document nests connections under lists: a list's parents must be read together.
QUERIES: dict[str, str] = {
    "creator": f"query($n: Int, $handle: String!) {{ creator(handle: $handle) {{ {CREATOR}"
               f" things2: things(first: $n) {{ nodes {{ owner {{ {CREATOR} }} }} }} }} }}",
    # (Not yet `months`: each month of a page is still read on its own, see docs/api.md.)
    "me": f"query($n: Int) {{ me {{ creator {{ {CREATOR} }} clicks(first: $n) {{ nodes {{ id thing {{ id"
          f" owner {{ {THINGS} }} }} }} }} subscriptions(first: $n) {{ nodes {{ id thing {{ owner {{ {THINGS} }}"
          f" }} }} }} payouts(first: $n) {{ nodes {{ id }} }} }} }}",
    "thing": f"query($n: Int, $thing: ID!) {{ thing(id: $thing) {{ owner {{ {CREATOR} }} }} }}",
    "thingByUrl": f"query($n: Int, $url: String!) {{ thingByUrl(url: $url) {{ owner {{ {CREATOR} }} }} }}",
    "node": f"query($n: Int, $creator: ID!) {{ node(id: $creator) {{ ... on Creator {{ {CREATOR} }} }} }}",
    "site": f"query($n: Int, $site: ID!) {{ site(id: $site) {{ {THINGS} owner {{ {CREATOR} }} }} }}",
    "sites": f"query($n: Int) {{ sites(first: $n) {{ nodes {{ {THINGS} owner {{ {CREATOR} }} }} }} }}",
    "searchSites": f"query($n: Int) {{ searchSites(first: $n, sort: NEWEST) {{ nodes {{ {THINGS}"
                   f" owner {{ {CREATOR} }} }} }} }}",
    "_entities": f"query($n: Int, $reps: [_Any!]!) {{ _entities(representations: $reps) {{"
                 f" ... on Creator {{ {CREATOR} }} }} }}",
    "webhookEndpoints": "query($n: Int) { webhookEndpoints(first: $n) { totalCount nodes { id"
                        " deliveries(first: $n) { totalCount nodes { id attemptLog { attempt } } } } } }",
    "partnerAnalytics": f"query($n: Int) {{ partnerAnalytics {{ things(first: $n) {{ nodes {{ clicks"
                        f" thing {{ owner {{ {THINGS} }} }} }} }} }} }}",
    "flaggedClicks": f"query($n: Int) {{ flaggedClicks(first: $n) {{ totalCount nodes {{ clickId supporter {{ handle }}"
                     f" reviewedBy {{ handle }} thing {{ owner {{ {THINGS} }} }} }} }} }}",
}
# Root fields whose lists are flat (no connection below them): nothing to multiply.
FLAT = {"apiKeys", "oauthClients", "linkedAccounts", "tenant", "categories"}


def reaches_a_connection(type_: Any, seen: frozenset[str] = frozenset()) -> bool:
    named = get_named_type(type_)
    if not isinstance(named, GraphQLObjectType) or named.name in seen:
        return False
    for field in named.fields.values():
        if "first" in field.args or reaches_a_connection(field.type, seen | {named.name}):
            return True
    return False


def test_every_root_field_that_reaches_a_connection_is_counted() -> None:
    schema = build_schema("all")._schema
    query_type = schema.query_type
    assert query_type is not None
    reaching = set()
    for name, field in query_type.fields.items():
        inner = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
        type_ = inner.of_type if isinstance(inner, GraphQLList) else inner
        named = get_named_type(type_)
        # The field's own page, if it is a connection, is the root's: what matters is below it.
        children = [c.type for c in named.fields.values()] if isinstance(named, GraphQLObjectType) else []
        if name == "node" or any(reaches_a_connection(c) for c in children):
            reaching.add(name)
    assert "creator" in reaching and "sites" in reaching  # positive control
    assert reaching - set(QUERIES) == set(), "root fields with nested connections missing from QUERIES"
    assert set(QUERIES) - reaching - {"_entities"} == set()


@pytest.fixture(scope="module")
async def world(settings: Settings) -> dict[str, Any]:
    if True:  # (one level, as the statements below were written)
        conn = await asyncpg.connect(settings.database_url)
        try:
            w = await f.make_tenant_world(conn)
            async with conn.transaction():
                await set_scope(conn, Scope(w.tenant_id))
                token = await issue_token(conn, tenant_id=w.tenant_id, account_id=w.supporter_id,
                                          ttl=timedelta(hours=1))
                _, key = await tenants.create_api_key(conn, tenant_id=w.tenant_id, name="all",
                                                      scopes=sorted(tenants.SCOPES), created_by=w.admin_id)
                sites = [w.site_public_id]
                for i in range(N):
                    sites.append(await conn.fetchval(
                        "insert into sites (tenant_id, owner_id, url, host, verification_token, verified_at,"
                        " verification_method, listed, listed_at, title, description, language, category)"
                        " values ($1, $2, $3, $4, 'tok', now(), 'well_known', true, now(), $5, 'A site.', 'en', 'text')"
                        " returning id", w.tenant_id, w.creator_id, f"https://{w.slug}-{i}.example/",
                        f"{w.slug}-{i}.example", f"Site {i}"))
                things = []
                for i in range(N):
                    things.append(await conn.fetchval(
                        "insert into things (tenant_id, url, title) values ($1, $2, $3) returning id",
                        w.tenant_id, f"https://{w.slug}-{i}.example/post", f"Thing {i}"))
                    # Each of the first site's things too, so that every site's list is long.
                    await conn.fetchval("insert into things (tenant_id, url, title) values ($1, $2, $3) returning id",
                                        w.tenant_id, f"https://{w.slug}-0.example/p{i}", f"Post {i}")
                for thing in things:
                    await conn.execute(
                        "insert into clicks (tenant_id, supporter_id, thing_id, period, accepted_at, idempotency_key)"
                        " values ($1, $2, $3, date_trunc('month', now())::date, now(), $4)",
                        w.tenant_id, w.supporter_id, thing, f.token("k"))
                    await conn.execute(
                        "insert into subscriptions (tenant_id, supporter_id, thing_id, months, start_period)"
                        " values ($1, $2, $3, 3, date_trunc('month', now())::date)", w.tenant_id, w.supporter_id,
                        thing)
                # Each of those clicks held for review (as detection would), seen by a platform admin.
                await conn.execute(
                    "insert into click_flags"
                    " (click_id, tenant_id, period, supporter_id, thing_id, accepted_at, reasons)"
                    " select id, tenant_id, period, supporter_id, thing_id, accepted_at, array['burst'] from clicks"
                    " where supporter_id = $1", w.supporter_id)
                await conn.execute("update account_private set is_platform_admin = true where account_id = $1",
                                   w.admin_id)
                admin_token = await issue_token(conn, tenant_id=w.tenant_id, account_id=w.admin_id,
                                                ttl=timedelta(hours=1))
                await conn.execute("insert into thing_stats (thing_id, period, clicks) select id,"
                                   " date_trunc('month', now())::date, 1 from things where id = any($1::bigint[])"
                                   " on conflict do nothing", things)
                for i in range(webhooks.MAX_ENDPOINTS):  # (as many as a tenant may have)
                    endpoint, _ = await webhooks.create_endpoint(
                        conn, tenant_id=w.tenant_id, url=f"https://hooks.example/{i}", events=["month.closed"])
                    if i == 0:
                        events = [await conn.fetchval(
                            "insert into webhook_events (tenant_id, type, payload) values ($1, 'month.closed', '{}')"
                            " returning id", w.tenant_id) for _ in range(N)]
                    for event in events[:3] if i else events:
                        delivery = await conn.fetchval(
                            "insert into webhook_deliveries (tenant_id, event_id, endpoint_id) values ($1, $2, $3)"
                            " returning id", w.tenant_id, event, endpoint)
                        await conn.execute(
                            "insert into webhook_attempts (tenant_id, delivery_id, attempt, status_code, duration_ms)"
                            " values ($1, $2, 1, 500, 3)", w.tenant_id, delivery)
            handle = await conn.fetchval("select handle from accounts where id = $1", w.creator_id)
            url = await conn.fetchval("select url from things where id = $1", things[0])
            return {"world": w, "token": token, "admin_token": admin_token, "key": key, "handle": handle,
                    "thing": things[0], "url": url,
                    "site": sites[1]}
        finally:
            await conn.close()


Client = httpx.AsyncClient


@pytest.fixture(scope="module")
async def counted(settings: Settings) -> AsyncIterator[tuple[Client, Statements]]:
    # Priced high on purpose: what is counted here is statements (graph.cost has its own tests).
    async with counted_app(replace(settings, query_cost_limit=10**9, query_cost_bucket=10**9)) as served:
        yield served


def variables(world: dict[str, Any], n: int) -> dict[str, Any]:
    w = world["world"]
    return {"n": n, "handle": world["handle"], "thing": to_global("Thing", world["thing"]), "url": world["url"],
            "creator": to_global("Creator", w.creator_id), "site": to_global("Site", world["site"]),
            "reps": [{"__typename": "Creator", "id": to_global("Creator", w.creator_id)}]}


def longest(data: Any) -> int:
    """The longest list in an answer (the positive control: pages are as long as asked)."""
    if isinstance(data, dict):
        return max((longest(v) for v in data.values()), default=0)
    if isinstance(data, list):
        return max([len(data), *(longest(v) for v in data)])
    return 0


@pytest.mark.parametrize("root", sorted(QUERIES))
async def test_statements_do_not_grow_with_the_page_size(root: str, world: dict[str, Any],
                                                          counted: tuple[Client, Statements]) -> None:
    client, statements = counted
    w = world["world"]
    headers = {"x-merci-tenant": w.slug}
    if root == "me":
        headers["authorization"] = f"Bearer {world['token']}"
    elif root == "flaggedClicks":
        headers["authorization"] = f"Bearer {world['admin_token']}"
    elif root in {"webhookEndpoints", "partnerAnalytics"}:
        headers["authorization"] = f"Bearer {world['key']}"
    counts, lengths = [], []
    for n in (2, 50):
        ran = []
        for _ in range(3):  # (the first also warms the caches: tenants, tokens, plans)
            before = statements.n
            r = await client.post("/graphql", json={"query": QUERIES[root], "variables": variables(world, n)},
                                  headers=headers)
            body = r.json()
            assert "errors" not in body, body["errors"]
            await asyncio.sleep(0.01)  # (query loggers are called soon after each statement)
            ran.append(statements.n - before)
        counts.append(min(ran[1:]))
        lengths.append(longest(body["data"]))
    assert lengths[0] == 2 and lengths[1] >= 50, (root, lengths)
    # Batches of independent branches may split differently from one run to the next (a
    # DataLoader takes what was asked in one turn of the event loop): a transaction's
    # slack (4 statements), where a statement per parent would add a hundred or more.
    assert counts[1] <= counts[0] + 4, f"{root}: {counts[0]} statements at first: 2, {counts[1]} at first: 50"


async def test_the_issue_s_query_runs_a_few_statements(world: dict[str, Any],
                                                       counted: tuple[Client, Statements]) -> None:
    client, statements = counted
    query = ("query($h: String!) { creator(handle: $h) { things(first: 50) { nodes { owner { things(first: 50) {"
             " nodes { owner { things(first: 2) { nodes { id } } } } } } } } } }")
    before = statements.n
    r = await client.post("/graphql", json={"query": query, "variables": {"h": world["handle"]}},
                          headers={"x-merci-tenant": world["world"].slug})
    assert "errors" not in r.json(), r.json()
    await asyncio.sleep(0.01)
    ran = statements.n - before
    assert ran < 40, ran
    assert re.search(r'"id"', r.text)
