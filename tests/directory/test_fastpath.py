"""searchSites through graph.fastpath answers exactly as Strawberry does: the same
requests go to an API with the fast path and one without it (MERCI_FAST_PATH=0), on
one database, and the answers are compared byte for byte. /metrics shows which requests
the fast path took, so a plan that silently never matches fails here."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import budget_left, create_database, drop_database, fast_and_slow_apis, fast_path_count
from tests.directory.helpers import listed_site, new_tenant, person

PAGE = ("query($q: String, $category: String, $language: String, $tenant: String, $sort: SiteSort, $first: Int,"
        " $after: String) { searchSites(query: $q, category: $category, language: $language, tenant: $tenant,"
        " sort: $sort, first: $first, after: $after) { %s } }")
EVERYTHING = ("edges { cursor node { id url host verified listed title description language category tags feedUrl"
              " createdAt listedAt buttonUrl } } nodes { id title } pageInfo { hasNextPage endCursor }"
              " correctedQuery totalCount countsAreEstimates facets { categories { value count }"
              " languages { value count } }")


@pytest.fixture(scope="module")
def apis(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    from merci.db import migrate

    dsn = create_database(server_url, "merci_fast_search")
    asyncio.run(migrate(dsn))

    async def world() -> str:
        conn = await asyncpg.connect(dsn)
        try:
            tid, slug = await new_tenant(conn)
            owner = await person(conn, tid, "creator")
            for i, (title, language, category) in enumerate([
                    ("Café des lyonnais", "fr", "text"), ("Chansons d’été 🎵", "fr", "audio"),
                    ("The zither podcast", "en", "audio"), ("Zither \"quotes\" and \\ slashes", "en", "software"),
                    ("Zither lessons", "de", "video"), ("Zither building", "en", "text")]):
                await listed_site(conn, tid, owner, title=title, language=language, category=category,
                                  description=f"Notes on the zither, part {i}.", tags=["zither", f"t{i}"],
                                  listed_at=f"2024-01-0{i + 1}T10:00:00Z")
            return slug
        finally:
            await conn.close()

    slug = asyncio.run(world())
    try:
        with fast_and_slow_apis(dsn, tmp_path_factory.mktemp("fast_search")) as (fast_url, slow_url):
            yield fast_url, slow_url, slug
    finally:
        drop_database(server_url, dsn)


def fast_count(base: str) -> float:
    return fast_path_count(base, "searchSites")


def post(base: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(base + "/graphql", json=body, timeout=30)


def test_search_through_the_fast_path_answers_as_strawberry_does(apis: tuple[str, str, str]) -> None:
    fast_url, slow_url, tenant = apis

    def page(selection: str = EVERYTHING, **variables: Any) -> dict[str, Any]:
        return {"query": PAGE % selection, "variables": {"tenant": tenant, **variables}}

    cursor = post(slow_url, page(q="zither", first=2)).json()["data"]["searchSites"]["pageInfo"]["endCursor"]
    newest = post(slow_url, page(sort="NEWEST", first=2)).json()["data"]["searchSites"]["pageInfo"]["endCursor"]
    cases: list[tuple[dict[str, Any], bool]] = [
        (page(), True),
        (page(q="zither"), True),
        (page(q="zither", first=2), True),
        (page(q="zither", first=2, after=cursor), True),
        (page(sort="NEWEST", first=2, after=newest), True),
        (page(q="cafe"), True),  # accents: the answer has non-ASCII text
        (page(q="chanson", language="fr"), True),
        (page(q="zihter"), True),  # a typo: correctedQuery
        (page(q="nothing-like-this"), True),
        (page(category="audio", sort="POPULAR"), True),
        (page("edges { node { title } }", sort="TRENDING"), True),
        (page("__typename e: edges { __typename c: cursor n: node { __typename t: title } } totalCount"), True),
        ({"query": 'query { searchSites(query: "zither", first: 3) { nodes { title tags } totalCount } }'}, True),
        # highlights (with the Site fields or alone: the page reads what they need), the words as typed
        (page("edges { node { title } } highlights { site title { start length } description { start length } }",
              q="zihter lesso"), True),
        (page("highlights { description { start } }", q="chansons"), True),
        ({"query": 'query { searchSites(query: "zihter", exact: true) { correctedQuery nodes { title } } }'}, True),
        # client errors: Strawberry words them
        (page(q="zither", after="bm90LWEtY3Vyc29y"), False),
        (page(q="zither", sort="POPULAR", after=cursor), False),
        (page(tenant="no-such-tenant"), False),
        (page(first=0), False),
        (page(category="cooking"), False),
        # not planned: fields the plan does not fill, fragments, another root field
        (page("edges { node { owner { handle } } }"), False),
        (page("edges { node { verification { status } } }"), False),
        ({"query": PAGE % "...P" + " fragment P on SiteSearchConnection { totalCount }",
          "variables": {"tenant": tenant}}, False),
        ({"query": "query { searchSites { totalCount } categories { id } }"}, False),
    ]
    # Each Site field alone: the page reads only the columns the selection needs.
    site_fields = ("id url host verified listed title description language category tags feedUrl createdAt"
                   " listedAt buttonUrl").split()
    cases += [(page(f"nodes {{ {name} }}", q="zither"), True) for name in site_fields]
    taken = 0
    for body, planned in cases:
        before = fast_count(fast_url)
        answers = [post(base, body) for base in (fast_url, slow_url)]
        assert answers[0].status_code == answers[1].status_code, body
        # (both processes draw on one cost budget: what is left differs, graph.cost)
        assert budget_left(answers[0].content) == budget_left(answers[1].content), body
        assert fast_count(fast_url) - before == (1 if planned else 0), body
        taken += planned
    assert fast_count(slow_url) == 0
    assert taken == 16 + len(site_fields)


scalars = (st.none() | st.text(max_size=3) | st.integers(min_value=-2**33, max_value=2**33) | st.booleans()
           | st.floats(allow_nan=False) | st.sampled_from(["RELEVANCE", "NEWEST", "relevance", "TRENDING"])
           | st.lists(st.text(max_size=2), max_size=2))
# The bench's and the directory page's declarations, one with a literal argument (never
# quick), one that leaves `sort` to its default, one with a required variable.
DECLARED = [
    PAGE % "totalCount",
    "query($q: String, $first: Int) { searchSites(query: $q, first: $first) { totalCount } }",
    "query($q: String!, $sort: SiteSort!) { searchSites(query: $q, sort: $sort) { totalCount } }",
    'query($q: String) { searchSites(query: $q, category: "audio") { totalCount } }',
]


_planners: list[Any] = []


@settings(max_examples=400, deadline=None)
@given(document=st.sampled_from(DECLARED),
       variables=st.dictionaries(st.sampled_from(["q", "category", "sort", "first", "after", "other"]), scalars,
                                 max_size=5))
def test_quick_scalar_coercion_agrees_with_graphql_core(document: str, variables: dict[str, Any]) -> None:
    from graphql.execution.values import get_argument_values, get_variable_values

    from directory.queries import FAST_QUERIES
    from graph.fastpath import Planner
    from graph.limits import has_nul
    from runtime.faces import build_schema

    if not _planners:
        _planners.append(Planner(build_schema("directory")._schema, {}, FAST_QUERIES))
    planner = _planners[0]
    schema = planner.schema
    plan = planner.plan(document, None)
    assert plan is not None
    values = get_variable_values(schema, plan.operation.variable_definitions or (), variables)
    expected = None
    if not isinstance(values, list):
        try:
            expected = get_argument_values(schema.query_type.fields["searchSites"], plan.root, values)
        except Exception:
            expected = None
    quick = plan.quick_arguments(variables)
    assert quick is None or quick == expected  # when sure, right (defaults included)
    # A NUL anywhere: the normal path refuses the request (graph.limits), so no plan takes it.
    assert plan.arguments(schema, variables) == (None if has_nul(variables) else expected)
    usual = all(isinstance(v, str) for k, v in variables.items() if k in ("q", "category", "after")) and \
        isinstance(variables.get("first", 0), int) and not isinstance(variables.get("first"), bool) and \
        -2**31 <= variables.get("first", 0) < 2**31 and variables.get("sort", "NEWEST") in ("RELEVANCE", "NEWEST",
                                                                                           "TRENDING") and \
        "other" not in variables
    if usual and document == DECLARED[0]:
        assert quick is not None  # strings, ints and enum names, every argument a variable: the quick way
    if document == DECLARED[3]:
        assert quick is None  # a literal argument: graphql-core coerces it
