"""signUp → logIn → me over the real HTTP API; refused input creates nothing."""

from __future__ import annotations

import asyncpg
import pytest

from tests.conftest import SIGN_UP, VERIFY_EMAIL, GraphQLClient, mailed_token, sign_up, unique

LOG_IN = """mutation($input: LogInInput!) { logIn(input: $input) {
  token account { handle email } userErrors { field message code } } }"""
ME = "{ me { id handle email displayName tenant { slug } creator { handle } } }"


async def count_accounts(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        return int(await conn.fetchval("select count(*) from accounts"))


def test_sign_up_log_in_me(gql: GraphQLClient) -> None:
    handle = unique("reader_")
    created = gql(SIGN_UP, {"input": {"email": f"  {handle.upper()}@Example.ORG ", "password": "a long passphrase",
                                      "handle": handle.upper(), "displayName": "A Reader"}})["signUp"]
    assert created == {"token": None, "account": None, "userErrors": []}  # nothing said until verified
    token = mailed_token(str(gql.http.base_url), f"{handle}@example.org")  # normalized
    verified = gql(VERIFY_EMAIL, {"input": {"token": token}})["verifyEmail"]
    assert verified["account"]["handle"] == handle and verified["account"]["emailVerified"] is True
    assert verified["token"].startswith("ms_")

    logged = gql(LOG_IN, {"input": {"email": f"{handle}@example.org", "password": "a long passphrase"}})["logIn"]
    assert logged["userErrors"] == []
    me = gql.as_(logged["token"])(ME)["me"]
    assert me["handle"] == handle
    assert me["email"] == f"{handle}@example.org"
    assert me["displayName"] == "A Reader"
    assert me["tenant"]["slug"] == "merci"
    assert me["creator"]["handle"] == handle
    assert GraphQLClient(str(gql.http.base_url))(ME)["me"] is None  # anonymous, no cookie


def test_log_in_sets_http_only_cookie_and_log_out_revokes(gql: GraphQLClient) -> None:
    user = sign_up(gql)
    r = gql.raw(LOG_IN, {"input": {"email": user["email"], "password": "correct horse battery"}})
    cookie = r.headers["set-cookie"]
    assert "merci_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    authed = gql.as_(r.json()["data"]["logIn"]["token"])
    assert authed(ME)["me"]["handle"] == user["handle"]
    out = authed("mutation { logOut { ok userErrors { code } } }")["logOut"]
    assert out == {"ok": True, "userErrors": []}
    again = authed.raw(ME)  # the revoked token: anonymous, and `me` says why it is not the user
    assert again.status_code == 200 and again.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert again.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_wrong_password_and_unknown_email_look_the_same(gql: GraphQLClient) -> None:
    user = sign_up(gql)
    wrong = gql(LOG_IN, {"input": {"email": user["email"], "password": "not the password"}})["logIn"]
    unknown = gql(LOG_IN, {"input": {"email": "nobody-" + user["email"], "password": "whatever123"}})["logIn"]
    assert wrong["token"] is None and unknown["token"] is None
    assert wrong["userErrors"] == unknown["userErrors"]
    assert wrong["userErrors"][0]["code"] == "INVALID_CREDENTIALS"


@pytest.mark.parametrize(
    ("email", "password", "handle", "code", "field"),
    [
        ("short@example.org", "short", None, "PASSWORD_TOO_SHORT", "password"),
        ("not-an-email", "long enough password", None, "INVALID_EMAIL", "email"),
        ("a@b", "long enough password", None, "INVALID_EMAIL", "email"),
        ("ok@example.org", "long enough password", "x", "INVALID_HANDLE", "handle"),
        ("ok@example.org", "long enough password", "has space", "INVALID_HANDLE", "handle"),
        ("ok@example.org", "long enough password", "admin", "HANDLE_TAKEN", "handle"),
    ],
)
async def test_sign_up_refusals_create_nothing(
    gql: GraphQLClient, system_pool: asyncpg.Pool, email: str, password: str, handle: str | None,
    code: str, field: str,
) -> None:
    before = await count_accounts(system_pool)
    data = gql(SIGN_UP, {"input": {"email": email, "password": password, "handle": handle or unique("h_")}})
    assert data["signUp"]["token"] is None
    assert data["signUp"]["account"] is None
    assert [(e["code"], e["field"]) for e in data["signUp"]["userErrors"]] == [(code, [field])]
    assert await count_accounts(system_pool) == before


async def test_duplicate_email_and_handle(gql: GraphQLClient, system_pool: asyncpg.Pool) -> None:
    user = sign_up(gql)
    before = await count_accounts(system_pool)
    dup_email = gql(SIGN_UP, {"input": {"email": user["email"].upper(), "password": "long enough password",
                                        "handle": unique("h_")}})["signUp"]
    assert dup_email == {"token": None, "account": None, "userErrors": []}  # no enumeration (test_account_mail)
    dup_handle = gql(SIGN_UP, {"input": {"email": unique() + "@example.org", "password": "long enough password",
                                         "handle": user["handle"]}})["signUp"]
    assert dup_handle["userErrors"][0]["code"] == "HANDLE_TAKEN"
    assert await count_accounts(system_pool) == before


async def test_same_email_in_another_tenant_is_a_different_account(
    gql: GraphQLClient, system_pool: asyncpg.Pool
) -> None:
    async with system_pool.acquire() as conn:
        slug = unique("t-")
        await conn.execute("insert into tenants (slug, name) values ($1, 'Other')", slug)
    user = sign_up(gql)
    other = GraphQLClient(str(gql.http.base_url), tenant=slug)
    data = other(SIGN_UP, {"input": {"email": user["email"], "password": "long enough password",
                                     "handle": unique("h_")}})["signUp"]
    assert data["userErrors"] == []
    unknown = GraphQLClient(str(gql.http.base_url), tenant="no-such-tenant").raw(ME)
    assert unknown.status_code == 400
    assert unknown.json()["errors"][0]["extensions"]["code"] == "UNKNOWN_TENANT"
