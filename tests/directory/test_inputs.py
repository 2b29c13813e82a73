"""Listings through GraphQL: creators list, edit and unlist their own sites, partners
list in bulk with an API key, and bad input gets clear errors that change nothing."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from merci.ids import to_global
from tests.conftest import GraphQLClient, sign_up
from tests.directory.helpers import new_tenant

LIST = """mutation($input: ListSiteInput!) { listSite(input: $input) {
  site { id listed title description tags language category feedUrl } userErrors { field message code } } }"""
UNLIST = """mutation($id: ID!) { unlistSite(input: {siteId: $id}) { site { listed } userErrors { code } } }"""
ADD = """mutation($url: String!) { addSite(input: {url: $url}) { site { id } userErrors { field message code } } }"""
BULK = """mutation($input: BulkListSitesInput!) { bulkListSites(input: $input) {
  sites { id title listed } userErrors { field message code } } }"""
SEARCH = """query($q: String, $category: String, $language: String, $first: Int, $after: String, $tenant: String) {
  searchSites(query: $q, category: $category, language: $language, first: $first, after: $after, tenant: $tenant) {
    totalCount edges { node { title } } } }"""


async def verified_site(system_pool: asyncpg.Pool, account_gid: str, host: str) -> str:
    from merci.ids import from_global

    _, owner = from_global(account_gid)
    async with system_pool.acquire() as conn:
        site = await conn.fetchval(
            "insert into sites (tenant_id, owner_id, url, host, verification_token, verified_at, verification_method)"
            " select tenant_id, id, $2, $3, 'tok', now(), 'meta' from accounts where id = $1 returning id",
            owner, f"https://{host}/", host)
    return to_global("Site", site)


def good(site_id: str, **changes: Any) -> dict[str, Any]:
    return {"siteId": site_id, "title": "Knitting for beginners", "description": "Patterns and tips, every week.",
            "language": "en", "category": "text", "tags": ["knitting"], "feedUrl": None, **changes}


async def test_list_edit_unlist(gql: GraphQLClient, system_pool: asyncpg.Pool) -> None:
    me = sign_up(gql)
    client = gql.as_(me["token"])
    site = await verified_site(system_pool, me["id"], f"{me['handle']}.example")
    listed = client(LIST, {"input": good(site, feedUrl="https://x.example/feed.xml", tags=["A", "a", " b "])})
    assert listed["listSite"]["userErrors"] == []
    assert listed["listSite"]["site"]["tags"] == ["a", "b"] and listed["listSite"]["site"]["listed"]
    edited = client(LIST, {"input": good(site, title="Knitting, crochet")})["listSite"]["site"]
    assert edited["title"] == "Knitting, crochet"
    assert gql(SEARCH, {"q": "crochet"})["searchSites"]["totalCount"] >= 1
    assert client(UNLIST, {"id": site})["unlistSite"] == {"site": {"listed": False}, "userErrors": []}
    # Somebody else's site: not theirs to list or unlist.
    other = gql.as_(sign_up(gql)["token"])
    assert other(LIST, {"input": good(site)})["listSite"]["userErrors"][0]["code"] == "NOT_FOUND"
    assert other(UNLIST, {"id": site})["unlistSite"]["userErrors"][0]["code"] == "NOT_FOUND"
    # Anonymous: log in first.
    anonymous = GraphQLClient(str(gql.http.base_url))
    assert anonymous(LIST, {"input": good(site)})["listSite"]["userErrors"][0]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(("changes", "code", "field"), [
    ({"title": ""}, "INVALID_TITLE", "title"),
    ({"title": "x" * 201}, "INVALID_TITLE", "title"),
    ({"description": "tiny"}, "INVALID_DESCRIPTION", "description"),
    ({"description": "x" * 1001}, "INVALID_DESCRIPTION", "description"),
    ({"tags": [f"t{i}" for i in range(11)]}, "TOO_MANY_TAGS", "tags"),
    ({"tags": ["x" * 51]}, "INVALID_TAG", "tags"),
    ({"category": "cooking"}, "INVALID_CATEGORY", "category"),
    ({"language": "english"}, "INVALID_LANGUAGE", "language"),
    ({"feedUrl": "javascript:alert(1)"}, "INVALID_URL", "feedUrl"),
    ({"siteId": "not-an-id"}, "INVALID_ID", "siteId"),
])
async def test_bad_listing_is_refused_and_changes_nothing(
    gql: GraphQLClient, system_pool: asyncpg.Pool, changes: dict[str, Any], code: str, field: str
) -> None:
    me = sign_up(gql)
    client = gql.as_(me["token"])
    site = await verified_site(system_pool, me["id"], f"{me['handle']}.example")
    result = client(LIST, {"input": good(site, **changes)})["listSite"]
    assert result["site"] is None
    assert [(e["code"], e["field"]) for e in result["userErrors"]] == [(code, [field])]
    assert result["userErrors"][0]["message"]
    async with system_pool.acquire() as conn:
        assert await conn.fetchval("select listed from sites where owner_id = (select id from accounts"
                                   " where handle = $1)", me["handle"]) is False


@pytest.mark.parametrize("url", ["ftp://x.example/", "not a url", "https://", "http://exa mple.org/",
                                 "https://x.example/" + "a" * 2100, "https://x.example/?q=1"])
def test_bad_site_urls(gql: GraphQLClient, url: str) -> None:
    client = gql.as_(sign_up(gql)["token"])
    result = client(ADD, {"url": url})["addSite"]
    assert result["site"] is None and result["userErrors"][0]["code"] == "INVALID_URL"
    assert result["userErrors"][0]["field"] == ["url"]


def test_adding_the_same_site_twice(gql: GraphQLClient) -> None:
    client = gql.as_(sign_up(gql)["token"])
    assert client(ADD, {"url": "https://Twice.example"})["addSite"]["userErrors"] == []
    again = client(ADD, {"url": "https://twice.example/"})["addSite"]
    assert again["userErrors"][0]["code"] == "SITE_EXISTS"


@pytest.mark.parametrize(("variables", "code"), [
    ({"first": 101}, "BAD_PAGE_SIZE"),
    ({"first": 0}, "BAD_PAGE_SIZE"),
    ({"category": "cooking"}, "UNKNOWN_CATEGORY"),
    ({"language": "french"}, "INVALID_LANGUAGE"),
    ({"q": "x" * 201}, "QUERY_TOO_LONG"),
    ({"after": "garbage!"}, "BAD_CURSOR"),
    ({"tenant": "no-such-tenant"}, "UNKNOWN_TENANT"),
])
def test_bad_search_arguments(gql: GraphQLClient, variables: dict[str, Any], code: str) -> None:
    r = gql.raw(SEARCH, variables)
    assert r.status_code == 200
    body = r.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == code, body
    assert body["errors"][0]["message"] != "Unexpected error."


def test_bad_sort_is_a_validation_error(gql: GraphQLClient) -> None:
    body = gql.raw("{ searchSites(sort: LOUDEST) { totalCount } }").json()
    assert "LOUDEST" in body["errors"][0]["message"]


async def test_partner_lists_in_bulk_with_an_api_key(gql: GraphQLClient, system_pool: asyncpg.Pool) -> None:
    from merci import accounts, tenants
    from merci.db import Scope, set_scope

    async with system_pool.acquire() as conn:
        tid, slug = await new_tenant(conn)
        async with conn.transaction():
            await set_scope(conn, Scope(tid))
            creators = [await accounts.sign_up(conn, tenant_id=tid, email=f"c{i}-{slug}@example.org",
                                               password="long enough password", handle=f"c{i}_{slug[4:]}")
                        for i in range(3)]
            _, key = await tenants.create_api_key(conn, tenant_id=tid, name="bulk", scopes=["sites:write"],
                                                  created_by=None)
            _, read_only = await tenants.create_api_key(conn, tenant_id=tid, name="ro", scopes=["read"],
                                                        created_by=None)
    site_ids = [await verified_site(system_pool, to_global("Account", c), f"bulk{i}-{slug}.example")
                for i, c in enumerate(creators)]
    partner = gql.as_(key)
    listings = [good(s, title=f"Partner blog {i}", tags=["partnerblog"]) for i, s in enumerate(site_ids)]
    bad = [*listings[:2], good(site_ids[2], description="no")]
    refused = partner(BULK, {"input": {"listings": bad}})["bulkListSites"]
    assert refused["sites"] is None
    assert refused["userErrors"][0]["field"] == ["listings", "2", "description"]
    assert gql(SEARCH, {"tenant": slug})["searchSites"]["totalCount"] == 0  # all or nothing
    done = partner(BULK, {"input": {"listings": listings}})["bulkListSites"]
    assert done["userErrors"] == [] and [s["listed"] for s in done["sites"]] == [True, True, True]
    assert gql(SEARCH, {"tenant": slug, "q": "partnerblog"})["searchSites"]["totalCount"] == 3
    too_many = partner(BULK, {"input": {"listings": [listings[0]] * 501}})["bulkListSites"]
    assert too_many["userErrors"][0]["code"] == "TOO_MANY_LISTINGS"
    assert gql.as_(read_only)(BULK, {"input": {"listings": listings}})["bulkListSites"]["userErrors"][0][
        "code"] == "FORBIDDEN"
    # Another tenant's key cannot touch these sites.
    other = gql.as_(sign_up(gql)["token"])
    assert other(BULK, {"input": {"listings": listings}})["bulkListSites"]["userErrors"][0]["code"] == "FORBIDDEN"
