"""CORS on /graphql over real HTTP (graph/cors.py): a listed origin's preflight answered
and cached, its answers (errors too) readable with credentials; an unlisted origin
gets no CORS header; `Vary: Origin` on every answer; tenant admins list their apps'
origins (addCorsOrigin, removeCorsOrigin) with userErrors, effective at once in their
process and within seconds in the others; and which user's cookie a listed origin may
use. The browser's side of it is tests/graph/test_cors_browser.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.partners.helpers import World
from tests.conftest import sign_up, start_api, wait_for

WEB_APP = "https://web.example"  # MERCI_CORS_ORIGINS: Merci's own web app, elsewhere
ME = "{ me { handle } }"
ADD = """mutation($origin: String!) { addCorsOrigin(input: {origin: $origin}) {
  origin tenant { slug corsOrigins } userErrors { field code message } } }"""
REMOVE = """mutation($origin: String!) { removeCorsOrigin(input: {origin: $origin}) {
  origin tenant { corsOrigins } userErrors { field code message } } }"""


@pytest.fixture(scope="module")
def servers(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, str]]:
    """Two API processes on one database (a tenant's list changes through the first)."""
    tmp = tmp_path_factory.mktemp("cors")
    first, base = start_api(database_url, tmp, MERCI_CORS_ORIGINS=WEB_APP)
    try:
        second, other = start_api(database_url, tmp, MERCI_CORS_ORIGINS=WEB_APP, MERCI_CORS_MAX_AGE="60")
        try:
            yield World(base, database_url, tmp), other
        finally:
            second.stop()
    finally:
        first.stop()


@pytest.fixture(scope="module")
def world(servers: tuple[World, str]) -> World:
    return servers[0]


def preflight(base: str, origin: str, headers: str = "content-type, authorization") -> httpx.Response:
    return httpx.options(base + "/graphql", headers={"origin": origin, "access-control-request-method": "POST",
                                                      "access-control-request-headers": headers})


def post(base: str, query: str, origin: str | None = None, **headers: str) -> httpx.Response:
    sent = headers | ({"origin": origin} if origin else {})
    return httpx.post(base + "/graphql", json={"query": query}, headers=sent, timeout=30)


def cors_headers(r: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in r.headers.items() if k.startswith("access-control-")}


def listed(r: httpx.Response, origin: str) -> bool:
    return r.headers.get("access-control-allow-origin") == origin


def test_a_listed_origins_preflight_is_answered_and_cached(world: World, servers: tuple[World, str]) -> None:
    r = preflight(world.url, WEB_APP)
    assert r.status_code == 204 and r.content == b""
    assert cors_headers(r) == {
        "access-control-allow-origin": WEB_APP,
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET, POST",
        "access-control-allow-headers": "Authorization, Content-Type, X-Merci-Tenant, X-Request-Id, traceparent,"
                                        " tracestate, apollographql-client-name, apollographql-client-version",
        "access-control-max-age": "600",
    }
    assert r.headers["vary"] == "Origin"
    assert preflight(servers[1], WEB_APP).headers["access-control-max-age"] == "60"  # MERCI_CORS_MAX_AGE


def test_a_listed_origin_reads_answers_and_errors_with_credentials(world: World) -> None:
    r = post(world.url, "{ __typename }", WEB_APP)
    assert r.json()["data"] == {"__typename": "Query"} and "errors" not in r.json()
    assert cors_headers(r) == {"access-control-allow-origin": WEB_APP, "access-control-allow-credentials": "true",
                               "access-control-expose-headers": "X-Request-Id, WWW-Authenticate"}
    assert r.headers.get_list("vary") == ["Origin"]
    # A bad token's answer and a bad request's 400 are readable too: the app can tell what went wrong.
    bad = post(world.url, ME, WEB_APP, authorization="Bearer ms_1_nope")
    assert bad.status_code == 200 and listed(bad, WEB_APP) and "invalid_token" in bad.headers["www-authenticate"]
    broken = httpx.post(world.url + "/graphql", content=b"{", headers={"content-type": "application/json",
                                                                       "origin": WEB_APP})
    assert broken.status_code == 400 and listed(broken, WEB_APP)
    get = httpx.get(world.url + "/graphql", params={"query": "{ __typename }"}, headers={"origin": WEB_APP})
    assert get.json()["data"] == {"__typename": "Query"} and "errors" not in get.json() and listed(get, WEB_APP)


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "https://web.example.evil.example",
                                    "https://WEB.example", "http://web.example", "https://web.example:8443"])
def test_an_unlisted_origin_gets_no_cors_header(world: World, origin: str) -> None:
    r = preflight(world.url, origin)
    assert r.status_code == 403 and cors_headers(r) == {} and r.headers["vary"] == "Origin"
    r = post(world.url, "{ __typename }", origin)
    assert cors_headers(r) == {} and r.headers["vary"] == "Origin"


def test_every_answer_of_graphql_varies_by_origin(world: World) -> None:
    for r in (post(world.url, "{ __typename }"), httpx.get(world.url + "/graphql?query={__typename}"),
              post(world.url, ME, authorization="Bearer nope")):
        assert r.headers.get_list("vary") == ["Origin"] and cors_headers(r) == {}
    # The pages are not the API's CORS: the embeds keep their own rules (and oEmbed its `*`).
    page = httpx.get(world.url + "/embed/login", headers={"origin": WEB_APP})
    assert "access-control-allow-origin" not in page.headers
    # An OPTIONS that is no preflight is still not a method of /graphql.
    assert httpx.options(world.url + "/graphql").status_code == 405


def test_tenant_admins_list_their_apps_origins(world: World, servers: tuple[World, str]) -> None:
    other = servers[1]
    partner = world.partner()
    admin = partner["client"]
    app = "https://app." + partner["slug"] + ".example"
    assert cors_headers(preflight(world.url, app)) == {}

    added = admin(ADD, {"origin": app.upper().replace("HTTPS", "https") + ":443/"})["addCorsOrigin"]
    assert added == {"origin": app, "tenant": {"slug": partner["slug"], "corsOrigins": [app]}, "userErrors": []}
    assert listed(preflight(world.url, app), app)  # at once in the process that changed it
    wait_for(lambda: listed(preflight(other, app), app), timeout=15, what="the other process to list it")
    again = admin(ADD, {"origin": app})["addCorsOrigin"]
    assert again["userErrors"] == [] and again["tenant"]["corsOrigins"] == [app]

    refused = {
        "http://app.example": "INSECURE_ORIGIN", "*": "INVALID_ORIGIN", "https://app.example/path": "INVALID_ORIGIN"}
    for origin, code in refused.items():
        out = admin(ADD, {"origin": origin})["addCorsOrigin"]
        assert out["origin"] is None and [(e["field"], e["code"]) for e in out["userErrors"]] == [(["origin"], code)]
    # Nobody but the tenant's admins: its supporters, its API keys; nor does anyone else see the list.
    supporter = sign_up(world.gql, tenant=partner["slug"])
    key = world.api_key(partner, ["read", "sites:write"])
    for client in (world.gql.as_(supporter["token"]), key):
        out = client(ADD, {"origin": "https://mine.example"})["addCorsOrigin"]
        assert [e["code"] for e in out["userErrors"]] == ["FORBIDDEN"]
        assert client("{ tenant { corsOrigins } }")["tenant"] == {"corsOrigins": None}
    assert not listed(preflight(world.url, "https://mine.example"), "https://mine.example")
    assert admin("{ tenant { corsOrigins } }")["tenant"] == {"corsOrigins": [app]}

    removed = admin(REMOVE, {"origin": app})["removeCorsOrigin"]
    assert removed == {"origin": app, "tenant": {"corsOrigins": []}, "userErrors": []}
    assert cors_headers(preflight(world.url, app)) == {}
    wait_for(lambda: cors_headers(preflight(other, app)) == {}, timeout=15, what="the other process to drop it")
    gone = admin(REMOVE, {"origin": app})["removeCorsOrigin"]
    assert [e["code"] for e in gone["userErrors"]] == ["NOT_FOUND"]


def test_a_listed_origin_uses_the_cookie_of_its_own_tenants_users_only(world: World) -> None:
    partner = world.partner()
    app = "https://app." + partner["slug"] + ".example"
    assert partner["client"](ADD, {"origin": app})["addCorsOrigin"]["userErrors"] == []
    ours = sign_up(world.gql)  # a user of the default tenant (Merci's own site)
    theirs = sign_up(world.gql, tenant=partner["slug"])

    def me(token: str, origin: str | None, cookie: bool = True) -> tuple[int, Any]:
        auth = {"cookie": f"merci_session={token}"} if cookie else {"authorization": f"Bearer {token}"}
        r = post(world.url, ME, origin, **auth)
        return r.status_code, (r.json()["data"]["me"] or {}).get("handle")

    own = world.url  # Merci's own pages (GraphiQL, the web app when it is served by Merci)
    assert me(ours["token"], None) == (200, ours["handle"])  # no page at all: a script, curl
    assert me(ours["token"], own) == (200, ours["handle"])
    assert me(ours["token"], WEB_APP) == (200, ours["handle"])  # the web app takes anyone's
    assert me(theirs["token"], WEB_APP) == (200, theirs["handle"])
    assert me(theirs["token"], app) == (200, theirs["handle"])  # the partner's app, its own users
    # ... but not another tenant's user, nor anyone from an origin nobody listed: their cookie
    # counts as not sent (the call runs anonymously, as when SameSite holds a cookie back).
    assert me(ours["token"], app) == (200, None)
    assert me(ours["token"], "https://evil.example") == (200, None)
    assert me(ours["token"], "null") == (200, None)
    assert me(theirs["token"], "https://app.elsewhere.example") == (200, None)
    # A bearer token is no ambient credential: whoever holds it chose to send it.
    assert me(ours["token"], app, cookie=False) == (200, ours["handle"])
    # The fast path (flattr) authenticates the same way.
    flattr = 'mutation { flattr(input: {url: "https://blog.example/p", idempotencyKey: "k1"}) { userErrors { code } } }'
    refused = post(world.url, flattr, app, cookie=f"merci_session={ours['token']}").json()["data"]["flattr"]
    assert refused == {"userErrors": [{"code": "UNAUTHENTICATED"}]}

