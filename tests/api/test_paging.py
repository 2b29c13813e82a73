"""Relay connections page forward and backward alike (issue 14).

merci.paging's keyset windows are held to the Relay spec's slicing algorithm on lists
of every size (a property test against a straightforward model), including the counts
and their cap. Then each kind of connection is walked over HTTP page by page, forward
with first/after and backward with last/before: both walks must give exactly the rows
the test wrote (a positive control: they cannot agree by seeing nothing), the page
flags must say where each page sits, and totalCount must count them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from merci import paging
from merci.accounts import issue_token
from merci.db import Scope, set_scope
from merci.ids import to_global
from merci.paging import Keyset, Window
from tests import factories as f
from tests.conftest import GraphQLClient
from tests.directory.helpers import listed_site, new_tenant

# ------------------------------------------------------------- the keyset model


def relay_slice(items: list[int], window: Window) -> tuple[list[int], bool, bool]:
    """The Relay spec's slicing of `items` (keys, newest first): ApplyCursorsToEdges,
    then first or last; and the page flags as merci.paging promises them (the near
    side: anything at or beyond the cursor, in the whole list)."""
    edges = [x for x in items if (window.after is None or x < window.after)
             and (window.before is None or x > window.before)]
    if window.backward:
        has_next = window.before is not None and any(x <= window.before for x in items)
        return edges[-window.size:], has_next, len(edges) > window.size
    has_previous = window.after is not None and any(x >= window.after for x in items)
    return edges[: window.size], len(edges) > window.size, has_previous


@pytest.fixture(scope="module")
async def model_conn(settings: Any) -> Any:  # type: ignore[no-untyped-def]
    conn = await asyncpg.connect(settings.database_url)
    yield conn
    await conn.close()


windows = st.builds(
    Window, size=st.integers(1, 6), after=st.none() | st.integers(0, 13), before=st.none() | st.integers(0, 13),
    backward=st.booleans())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 12), holes=st.sets(st.integers(1, 12)), window=windows)
async def test_keyset_windows_slice_as_relay_says(model_conn: asyncpg.Connection, n: int, holes: set[int],
                                                  window: Window) -> None:
    ids = [i for i in range(n, 0, -1) if i not in holes]  # newest first, with gaps (deleted rows)
    listing = Keyset("select g as id from unnest($1::bigint[]) as g where true", (ids,), key="g")
    page = await listing.page(model_conn, window)
    expected, has_next, has_previous = relay_slice(ids, window)
    assert [r["id"] for r in page.rows] == expected
    assert (page.has_next, page.has_previous) == (has_next, has_previous)
    count = await listing.count(model_conn)
    assert count == paging.Count(len(ids), True)


async def test_a_count_stops_at_the_cap_and_says_so(model_conn: asyncpg.Connection,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    listing = Keyset("select g as id from generate_series(1, 12) as g where true", (), key="g")
    assert await listing.count(model_conn) == paging.Count(12, True)
    monkeypatch.setattr(paging, "COUNT_CAP", 12)
    assert await listing.count(model_conn) == paging.Count(12, True)
    monkeypatch.setattr(paging, "COUNT_CAP", 11)
    assert await listing.count(model_conn) == paging.Count(11, False)


async def test_ascending_lists_page_the_other_way(model_conn: asyncpg.Connection) -> None:
    listing = Keyset("select g as id from generate_series(1, 7) as g where true", (), key="g", descending=False)
    first = await listing.page(model_conn, Window(3))
    assert [r["id"] for r in first.rows] == [1, 2, 3] and first.has_next and not first.has_previous
    back = await listing.page(model_conn, Window(3, before=3, backward=True))
    assert [r["id"] for r in back.rows] == [1, 2] and back.has_next and not back.has_previous
    end = await listing.page(model_conn, Window(2, backward=True))
    assert [r["id"] for r in end.rows] == [6, 7] and not end.has_next and end.has_previous


# ------------------------------------------------------------------ over HTTP

PAGE = """query($first: Int, $after: String, $last: Int, $before: String%(extra)s) { %(open)s
  CONN(first: $first, after: $after, last: $last, before: $before%(args)s) {
    totalCount totalCountPrecision
    edges { cursor node { %(key)s } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } %(close)s }"""


def walk(client: GraphQLClient, query: str, path: list[str], size: int, *, backward: bool,
         variables: dict[str, Any] | None = None) -> tuple[list[Any], int]:
    """Every node key of the connection, page by page; checks each page's flags."""
    seen: list[list[Any]] = []
    cursor: str | None = None
    total = -1
    while True:
        page_vars = {"last": size, "before": cursor} if backward else {"first": size, "after": cursor}
        data: Any = client(query, {**(variables or {}), **page_vars})
        for key in path:
            data = data[key]
        info, edges = data["pageInfo"], data["edges"]
        keys = [next(iter(e["node"].values())) for e in edges]
        assert info["startCursor"] == (edges[0]["cursor"] if edges else None)
        assert info["endCursor"] == (edges[-1]["cursor"] if edges else None)
        # The side we came from has more once we have moved; the side we go to says whether to go on.
        came_from, go_on = ("hasNextPage", "hasPreviousPage") if backward else ("hasPreviousPage", "hasNextPage")
        assert info[came_from] is (cursor is not None), (path, info, cursor)
        assert data["totalCountPrecision"] == "EXACT"
        total = data["totalCount"]
        seen.append(keys)
        if not info[go_on]:
            break
        assert len(keys) == size
        cursor = info["startCursor"] if backward else info["endCursor"]
    if backward:
        seen.reverse()
    return [k for page in seen for k in page], total


def check_both_ways(client: GraphQLClient, query: str, path: list[str], expected: list[Any],
                    variables: dict[str, Any] | None = None) -> None:
    assert len(expected) >= 5  # the positive control: several pages of real rows
    for size in (1, 2, 3, min(len(expected), 100), 100):
        for backward in (False, True):
            got, total = walk(client, query, path, size, backward=backward, variables=variables)
            assert got == expected, (path, size, backward)
            assert total == len(expected)


def page_query(conn: str, key: str = "id", *, open_: str = "", close: str = "", extra: str = "",
               args: str = "") -> str:
    return (PAGE % {"open": open_, "close": close, "extra": extra, "args": args, "key": key}).replace("CONN", conn)


async def test_a_supporters_lists_page_both_ways(api_url: str, system_pool: asyncpg.Pool) -> None:
    async with system_pool.acquire() as conn:
        tid = await f.merci_tenant(conn)
        fan = await f.supporter(conn, tid, budget=500, funds=10_000)
        creator = await f.person(conn, tid, "creator")
        async with conn.transaction():
            await set_scope(conn, Scope(tid))
            things = [await f.thing(conn, tid, creator) for _ in range(7)]
            # seven clicks in February, one in each of four other months
            for t in things:
                await f.click(conn, tid, fan, t, "2026-02-10T12:00:00Z")
            for month, t in zip(("2025-11", "2025-12", "2026-01", "2026-03"), things, strict=False):
                await f.click(conn, tid, fan, t, f"{month}-05T08:00:00Z")
            clicks = await conn.fetch("select id from clicks where supporter_id = $1 and period = '2026-02-01'"
                                      " order by id desc", fan)
            # (failed ones: a pending payout would reserve earnings this creator does not have)
            payouts = [await conn.fetchval(
                "insert into payouts (tenant_id, account_id, amount, currency, provider, idempotency_key, status,"
                " reason, settled_at) values ($1, $2, 1000, 'EUR', 'dev', $3, 'failed', 'refused', now())"
                " returning id", tid, creator, f"p{i}") for i in range(6)]
            tokens = {who: await issue_token(conn, tenant_id=tid, account_id=pk, ttl=timedelta(hours=1))
                      for who, pk in (("fan", fan), ("creator", creator))}
    as_fan, as_creator = GraphQLClient(api_url, tokens["fan"]), GraphQLClient(api_url, tokens["creator"])

    check_both_ways(as_fan, page_query("clicks", open_="me {", close="}", args=", period: \"2026-02\""),
                    ["me", "clicks"], [to_global("Click", r["id"]) for r in clicks])
    check_both_ways(as_fan, page_query("months", "period", open_="me {", close="}"), ["me", "months"],
                    ["2026-03", "2026-02", "2026-01", "2025-12", "2025-11"])
    check_both_ways(as_creator, page_query("payouts", open_="me {", close="}"), ["me", "payouts"],
                    [to_global("Payout", p) for p in reversed(payouts)])
    # A creator's things, as anyone sees them.
    check_both_ways(GraphQLClient(api_url), page_query("things", open_="creator: node(id: $creator) { ... on Creator {",
                                                       close="} }", extra=", $creator: ID!"),
                    ["creator", "things"], [to_global("Thing", t) for t in reversed(things)],
                    {"creator": to_global("Creator", creator)})
    # A month of the list is the month as `month(period:)` tells it.
    months = as_fan("{ me { months(first: 2) { nodes { period clicks } } } }")["me"]["months"]["nodes"]
    assert months == [{"period": "2026-03", "clicks": 1}, {"period": "2026-02", "clicks": 7}]


async def test_tenant_lists_page_both_ways(api_url: str, system_pool: asyncpg.Pool) -> None:
    """Lists in ascending order (API keys), one whose count is known beforehand
    (partner analytics), and the directory's listed sites (counted from listing_counts)."""
    async with system_pool.acquire() as conn:
        w = await f.make_tenant_world(conn)
        async with conn.transaction():
            await set_scope(conn, Scope(w.tenant_id))
            from merci import tenants

            for i in range(5):
                await tenants.create_api_key(conn, tenant_id=w.tenant_id, name=f"key {i}", scopes=["read"],
                                             created_by=w.admin_id)
            analytics_key = (await tenants.create_api_key(conn, tenant_id=w.tenant_id, name="stats",
                                                          scopes=["analytics:read"], created_by=w.admin_id))[1]
            keys = [r["id"] for r in await conn.fetch("select id from api_keys where tenant_id = $1 order by id",
                                                      w.tenant_id)]
            things = [await f.thing(conn, w.tenant_id, w.creator_id) for _ in range(5)]
            await conn.execute("insert into thing_stats (thing_id, period, clicks) select t, '2026-02-01', 3"
                               " from unnest($1::bigint[]) t", things)
            admin = await issue_token(conn, tenant_id=w.tenant_id, account_id=w.admin_id, ttl=timedelta(hours=1))
        dir_tid, _ = await new_tenant(conn)
        owner = await f.person(conn, dir_tid, "lister")
        for i in range(5):
            await listed_site(conn, dir_tid, owner, title=f"Paged site {i}")
        listed = [r["id"] for r in await conn.fetch(
            "select id from sites where listed and verified_at is not null order by id desc")]

    check_both_ways(GraphQLClient(api_url, admin), page_query("apiKeys"), ["apiKeys"],
                    [to_global("ApiKey", k) for k in keys])
    check_both_ways(GraphQLClient(api_url, analytics_key),
                    page_query("things", "clicks", open_='partnerAnalytics(period: "2026-02") {', close="}"),
                    ["partnerAnalytics", "things"], [3] * len(things))
    ids = walk(GraphQLClient(api_url, analytics_key),
               page_query("things", "thing { id }", open_='partnerAnalytics(period: "2026-02") {', close="}"),
               ["partnerAnalytics", "things"], 2, backward=True)[0]
    assert ids == [{"id": to_global("Thing", t)} for t in sorted(things)]
    check_both_ways(GraphQLClient(api_url), page_query("sites"), ["sites"], [to_global("Site", s) for s in listed])


def test_paging_arguments_are_checked(gql: GraphQLClient) -> None:
    def error(args: str) -> dict[str, Any]:
        body = gql.raw("{ sites(%s) { totalCount } }" % args).json()
        return {"message": body["errors"][0]["message"], "code": body["errors"][0]["extensions"]["code"]}

    assert error("first: 2, last: 2") == {"message": "give `first` or `last`, not both", "code": "BAD_PAGE_SIZE"}
    assert error("last: 0")["message"] == "`last` must be between 1 and 100"
    assert error("last: 101")["code"] == "BAD_PAGE_SIZE"
    assert error('last: 2, before: "%%%"') == {"message": "`before` is not a valid cursor", "code": "BAD_CURSOR"}
    assert error('first: 2, after: "bm9wZQ=="')["code"] == "BAD_CURSOR"


def test_search_pages_say_where_they_sit(gql: GraphQLClient) -> None:
    """searchSites pages forward only (ranked): hasPreviousPage once `after` is given."""
    q = """query($after: String) { searchSites(sort: NEWEST, first: 1, after: $after) {
      edges { cursor } totalCount totalCountPrecision
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"""
    first = gql(q)["searchSites"]
    assert first["pageInfo"]["hasPreviousPage"] is False and first["pageInfo"]["hasNextPage"] is True
    assert first["pageInfo"]["startCursor"] == first["pageInfo"]["endCursor"] == first["edges"][0]["cursor"]
    assert first["totalCountPrecision"] == "EXACT"
    second = gql(q, {"after": first["pageInfo"]["endCursor"]})["searchSites"]
    assert second["pageInfo"]["hasPreviousPage"] is True
    assert second["edges"][0]["cursor"] != first["edges"][0]["cursor"]
