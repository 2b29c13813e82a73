"""Every root field of the merged schema, fuzzed by schemathesis with arguments built
from its introspection: as nobody, as a signed-up person, as a tenant admin and with
a partner's API key of every scope.
Whatever comes in, the API answers 200 with GraphQL data or errors: never a 5xx, never
a masked "Unexpected error." (an exception nobody meant), on its own database."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.graphql import nodes

from merci.tenants import SCOPES
from tests.conftest import (
    GraphQLClient,
    create_database,
    drop_database,
    sign_up,
    start_api,
    system_fetch,
    unique,
)

CREATE_KEY = """mutation($scopes: [String!]!) { createApiKey(input: {name: "fuzz", scopes: $scopes}) {
  secret userErrors { code } } }"""

schemathesis.graphql.scalar("DateTime", st.datetimes(timezones=st.just(UTC)).map(
    lambda d: nodes.String(d.isoformat())))
schemathesis.graphql.scalar("_Any", st.just(nodes.Object([])))

def _introspection() -> dict[str, Any]:
    from graphql import introspection_from_schema

    from runtime.faces import build_schema

    return introspection_from_schema(build_schema("all")._schema)  # type: ignore[return-value]


schema = schemathesis.graphql.from_dict(_introspection())


@pytest.fixture(scope="module")
def fuzzed(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from merci.db import migrate

    dsn = create_database(server_url, "merci_fuzz")
    asyncio.run(migrate(dsn))
    svc, base = start_api(dsn, tmp_path_factory.mktemp("fuzz"))
    try:
        client = GraphQLClient(base)
        person = sign_up(client)
        slug = unique("fuzz-")
        system_fetch(dsn, "insert into tenants (slug, name, partner_share_bps) values ($1, 'Fuzz', 2000)", slug)
        admin = sign_up(GraphQLClient(base), tenant=slug)
        system_fetch(dsn, "update account_private set is_tenant_admin = true where account_id ="
                     " (select id from accounts where handle = $1)", admin["handle"])
        key = GraphQLClient(base, admin["token"])(CREATE_KEY, {"scopes": sorted(SCOPES)})["createApiKey"]
        assert key["userErrors"] == [], key
        yield {"url": base + "/graphql", "headers": {
            "nobody": {}, "person": {"authorization": f"Bearer {person['token']}"},
            "tenant admin": {"authorization": f"Bearer {admin['token']}"},
            "partner key": {"authorization": f"Bearer {key['secret']}"}}}
    finally:
        svc.stop()
        drop_database(server_url, dsn)


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
@pytest.mark.parametrize("who", ["nobody", "person", "tenant admin", "partner key"])
def test_no_input_makes_the_api_fail(case: Any, fuzzed: dict[str, Any], who: str) -> None:
    # Logging out as the person would end their session for every case after it.
    headers = {} if case.operation.label == "Mutation.logOut" else fuzzed["headers"][who]
    response = case.call(url=fuzzed["url"], headers=headers, timeout=30)
    assert "www-authenticate" not in response.headers, "the person's session ended: fuzz it elsewhere"
    assert response.status_code < 500, (case.body, response.text[:500])
    body = response.json()
    assert "data" in body or "errors" in body, response.text[:500]
    masked = [e for e in body.get("errors") or [] if e.get("message") == "Unexpected error."]
    assert masked == [], (case.body, masked)



@pytest.mark.parametrize("body", [
    {"query": 'query { creator(handle: "a\\u0000b") { handle } }'},  # a literal
    {"query": "query($h: String!) { creator(handle: $h) { handle } }", "variables": {"h": "a\x00b"}},
    # the planned paths too: a click and a search, by variables
    {"query": "mutation($i: FlattrInput!) { flattr(input: $i) { click { status } } }",
     "variables": {"i": {"url": "https://nul.example/", "idempotencyKey": "k\x00"}}},
    {"query": "query($q: String) { searchSites(query: $q) { totalCount } }", "variables": {"q": "caf\x00e"}},
])
def test_a_nul_character_is_a_clear_error(fuzzed: dict[str, Any], body: dict[str, Any]) -> None:
    import httpx

    r = httpx.post(fuzzed["url"], json=body, timeout=30)
    assert r.status_code == 200
    errors = r.json()["errors"]
    assert [(e["message"], e["extensions"]["code"]) for e in errors] == [
        ("text may not contain the NUL character (U+0000)", "BAD_USER_INPUT")], errors
    assert r.json().get("data") is None


def test_pages_refuse_a_nul_character_before_any_route(fuzzed: dict[str, Any]) -> None:
    import httpx

    base = fuzzed["url"].removesuffix("/graphql")
    with httpx.Client(base_url=base, timeout=30) as http:
        for path in ["/directory?q=caf%00e", "/badge/creator/a%00b.svg", "/submit?url=https://x.example/%00"]:
            r = http.get(path)
            assert (r.status_code, r.text) == (400, "NUL characters (%00) are not accepted.\n"), path
        assert http.get("/directory?q=cafe").status_code == 200
        form = {"content-type": "application/x-www-form-urlencoded"}
        r = http.post("/oauth/token", content=b"grant_type=authorization_code&client_id=nope&code=x%00", headers=form)
        assert r.status_code == 400
        # Without one, the form reaches its route whole: the token endpoint reads the client from it.
        r = http.post("/oauth/token", content=b"grant_type=authorization_code&client_id=nope&code=x", headers=form)
        assert (r.status_code, r.json()["error"]) == (401, "invalid_client")


def test_ids_and_cursors_beyond_postgresql_s_bigint_are_clear_errors(fuzzed: dict[str, Any]) -> None:
    import base64

    import httpx

    from merci.ids import to_global
    from merci.search import encode_cursor

    huge = 10**20  # no bigint holds it: it names nothing
    after = base64.urlsafe_b64encode(f"c:{huge}".encode()).decode()
    cases = [
        (f'{{ node(id: "{to_global("Thing", huge)}") {{ id }} }}', "INVALID_ID"),
        (f'{{ site(id: "{to_global("Site", huge)}") {{ id }} }}', "INVALID_ID"),
        (f'{{ sites(after: "{after}") {{ edges {{ cursor }} }} }}', "BAD_CURSOR"),
        (f'{{ searchSites(sort: POPULAR, after: "{encode_cursor("p", 5, huge, False)}") {{ totalCount }} }}',
         "BAD_CURSOR"),
        (f'{{ searchSites(sort: POPULAR, after: "{encode_cursor("p", huge, 5, False)}") {{ totalCount }} }}',
         "BAD_CURSOR"),
    ]
    for query, code in cases:
        body = httpx.post(fuzzed["url"], json={"query": query}, timeout=30).json()
        codes = [e.get("extensions", {}).get("code") for e in body.get("errors") or []]
        assert codes == [code], (query, body)
    base = fuzzed["url"].removesuffix("/graphql")
    for path in [f"/badge/thing/{huge}.svg", f"/badge/thing/{to_global('Thing', huge)}.svg"]:
        assert httpx.get(base + path, timeout=30).status_code == 400, path
