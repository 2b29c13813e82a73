"""The platform admins' list of tenants (`tenants`): every tenant, newest first, paged;
anyone else (a tenant's admin, a supporter, nobody) gets an empty connection, never
an error that would say the list exists."""

from __future__ import annotations

from tests.conftest import GraphQLClient, sign_up, system_fetch, system_scalar, unique

TENANTS = """query($first: Int, $after: String) { tenants(first: $first, after: $after) {
  totalCount nodes { slug name feeBps partnerShareBps createdAt } pageInfo { hasNextPage endCursor } } }"""
CREATE = """mutation($slug: String!) { createTenant(input: {slug: $slug, name: "Blogs", feeBps: 800,
  partnerShareBps: 2500}) { tenant { slug } userErrors { code } } }"""


def test_platform_admins_list_every_tenant_and_nobody_else_sees_one(gql: GraphQLClient, database_url: str) -> None:
    admin, fan, partner = sign_up(gql), sign_up(gql), sign_up(gql)
    system_fetch(database_url, "update account_private set is_platform_admin = true where account_id ="
                 " (select id from accounts where handle = $1)", admin["handle"])
    system_fetch(database_url, "update account_private set is_tenant_admin = true where account_id ="
                 " (select id from accounts where handle = $1)", partner["handle"])
    as_admin = gql.as_(admin["token"])
    slug = unique("t-").replace("_", "-").lower()
    assert as_admin(CREATE, {"slug": slug})["createTenant"]["userErrors"] == []

    # Newest first: the one just made, with its terms; every tenant counted.
    first = as_admin(TENANTS, {"first": 1})["tenants"]
    assert [{k: v for k, v in n.items() if k != "createdAt"} for n in first["nodes"]] == [
        {"slug": slug, "name": "Blogs", "feeBps": 800, "partnerShareBps": 2500}]
    assert first["nodes"][0]["createdAt"].startswith("20")
    assert first["totalCount"] == system_scalar(database_url, "select count(*) from tenants") >= 2
    assert first["pageInfo"]["hasNextPage"] is True
    rest = as_admin(TENANTS, {"first": 100, "after": first["pageInfo"]["endCursor"]})["tenants"]["nodes"]
    assert slug not in [n["slug"] for n in rest] and "merci" in [n["slug"] for n in rest]

    # Nobody else: the positive control above shows the list is not empty.
    nothing = {"totalCount": 0, "nodes": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}
    for client in (gql.as_(fan["token"]), gql.as_(partner["token"]), gql):
        assert client(TENANTS, {"first": 10})["tenants"] == nothing


def test_a_bad_cursor_or_page_size_is_a_clear_refusal(gql: GraphQLClient) -> None:
    for variables in ({"first": -1}, {"first": 10, "after": "not a cursor"}, {"first": 1, "last": 1}):
        r = gql.raw(TENANTS.replace("$first: Int, $after: String", "$first: Int, $after: String, $last: Int")
                    .replace("after: $after)", "after: $after, last: $last)"), variables)
        body = r.json()
        assert r.status_code < 500 and body["errors"][0]["extensions"]["code"], body
