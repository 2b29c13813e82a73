"""Every refusal of an input is reported at once (issue 14): a bad handle no longer
hides a short password. Each mutation whose input has several fields is sent with
several of them wrong and must name every one, and the whole lot changes nothing.
A mutation added with several fields fails here until it is listed below."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
from graphql import build_schema, get_named_type

from merci import tenants
from merci.accounts import issue_token
from merci.db import Scope, set_scope
from merci.ids import to_global
from tests import factories as f
from tests.conftest import ROOT, GraphQLClient

# (mutation, input, who sends it, the refusals expected: (field path, code))
Case = tuple[str, dict[str, Any], str, set[tuple[tuple[str, ...] | None, str]]]


def cases(w: dict[str, Any]) -> list[Case]:
    taken = w["fan_email"]
    return [
        ("signUp", {"email": "nope", "password": "short", "handle": "x!", "displayName": "d" * 101}, "anon",
         {(("email",), "INVALID_EMAIL"), (("password",), "PASSWORD_TOO_SHORT"), (("handle",), "INVALID_HANDLE"),
          (("displayName",), "INVALID_DISPLAY_NAME")}),
        # the database's refusals of the good fields come with the others (a taken email is
        # never one: signUp does not tell whether an email has an account)
        ("signUp", {"email": taken, "password": "short", "handle": w["fan_handle"]}, "anon",
         {(("password",), "PASSWORD_TOO_SHORT"), (("handle",), "HANDLE_TAKEN")}),
        ("signUp", {"email": "weak@example.org", "password": "aaaaaaaaaa", "handle": "x!"}, "anon",
         {(("password",), "WEAK_PASSWORD"), (("handle",), "INVALID_HANDLE")}),
        ("createTenant", {"slug": "X", "name": "", "feeBps": 9000, "partnerShareBps": -1,
                          "admin": {"email": "bad", "password": "short", "handle": "ok_handle_" + w["n"]}}, "root",
         {(("slug",), "INVALID_SLUG"), (("name",), "INVALID_NAME"), (("feeBps",), "INVALID_FEE"),
          (("partnerShareBps",), "INVALID_SHARE"), (("admin", "email"), "INVALID_EMAIL"),
          (("admin", "password"), "PASSWORD_TOO_SHORT")}),
        ("createApiKey", {"name": "", "scopes": ["read", "everything"]}, "admin",
         {(("name",), "INVALID_NAME"), (("scopes",), "UNKNOWN_SCOPE")}),
        ("topUp", {"amount": 10**9, "provider": "iou"}, "fan",
         {(("amount",), "AMOUNT_TOO_LARGE"), (("provider",), "UNKNOWN_PROVIDER")}),
        ("submitThing", {"url": "notaurl", "title": "", "category": "cars", "language": "english",
                         "tags": ["t" * 51]}, "fan",
         {(("url",), "INVALID_URL"), (("title",), "INVALID_TITLE"), (("category",), "INVALID_CATEGORY"),
          (("language",), "INVALID_LANGUAGE"), (("tags",), "INVALID_TAG")}),
        ("flattr", {"thingId": "nope", "idempotencyKey": ""}, "fan",
         {(("thingId",), "INVALID_ID"), (("idempotencyKey",), "INVALID_IDEMPOTENCY_KEY")}),
        ("flattr", {"url": "notaurl", "idempotencyKey": " "}, "fan",
         {(("url",), "INVALID_URL"), (("idempotencyKey",), "INVALID_IDEMPOTENCY_KEY")}),
        ("subscribe", {"thingId": "nope", "months": 5}, "fan",
         {(("thingId",), "INVALID_ID"), (("months",), "INVALID_TERM")}),
        ("createWebhookEndpoint", {"url": "ftp://x.example/", "events": [], "description": "d" * 201}, "hooks",
         {(("url",), "INVALID_URL"), (("events",), "NO_EVENT"), (("description",), "INVALID_DESCRIPTION")}),
        ("updateWebhookEndpoint", {"id": "nope", "url": "https://user:pw@x.example/", "events": []}, "hooks",
         {(("id",), "INVALID_ID"), (("url",), "INVALID_URL"), (("events",), "NO_EVENT")}),
        ("createOAuthClient", {"name": " ", "redirectUris": ["http://partner.example/cb", "https://ok.example/cb"]},
         "admin", {(("name",), "INVALID_NAME"), (("redirectUris",), "INVALID_REDIRECT_URI")}),
        ("startTopUp", {"amount": 10**9, "idempotencyKey": ""}, "fan",  # (no Stripe on this API)
         {(("amount",), "AMOUNT_TOO_LARGE"), (("idempotencyKey",), "INVALID_IDEMPOTENCY_KEY"),
          (None, "PROVIDER_UNAVAILABLE")}),
        ("requestRefund", {"topUpId": "nope", "idempotencyKey": "", "amount": 0}, "fan",
         {(("topUpId",), "INVALID_ID"), (("idempotencyKey",), "INVALID_IDEMPOTENCY_KEY"),
          (("amount",), "AMOUNT_TOO_SMALL")}),
        ("setPayoutMethod", {"method": "SEPA", "iban": "DE00 0000", "holder": " "}, "fan",
         {(("iban",), "INVALID_IBAN"), (("holder",), "INVALID_HOLDER")}),
        ("requestPayout", {"idempotencyKey": "", "amount": 0, "provider": "iou"}, "fan",
         {(("idempotencyKey",), "INVALID_IDEMPOTENCY_KEY"), (("amount",), "AMOUNT_TOO_SMALL"),
          (("provider",), "UNKNOWN_PROVIDER")}),
        ("addSite", {"url": "https://site.example/?q=1", "ownerId": "nope"}, "sites",
         {(("url",), "INVALID_URL"), (("ownerId",), "INVALID_ID")}),
        ("listSite", {"siteId": "nope", "title": "", "description": "tiny", "language": "xyz", "category": "cars",
                      "feedUrl": "notaurl"}, "fan",
         {(("siteId",), "INVALID_ID"), (("title",), "INVALID_TITLE"), (("description",), "INVALID_DESCRIPTION"),
          (("language",), "INVALID_LANGUAGE"), (("category",), "INVALID_CATEGORY"), (("feedUrl",), "INVALID_URL")}),
        ("bulkListSites", {"listings": [
            {"siteId": w["site"], "title": "", "description": "A fine description", "language": "en",
             "category": "text"},
            {"siteId": "nope", "title": "Fine", "description": "tiny", "language": "en", "category": "cars"}]},
         "sites", {(("listings", "0", "title"), "INVALID_TITLE"), (("listings", "1", "siteId"), "INVALID_ID"),
                   (("listings", "1", "description"), "INVALID_DESCRIPTION"),
                   (("listings", "1", "category"), "INVALID_CATEGORY")}),
        ("registerThings", {"things": [
            {"url": "notaurl", "title": "", "ownerId": w["creator"]},
            {"url": "https://fine.example/p", "title": "Fine", "category": "cars", "language": "xyz",
             "ownerId": w["creator"]}]}, "things",
         {(("things", "0", "url"), "INVALID_URL"), (("things", "0", "title"), "INVALID_TITLE"),
          (("things", "1", "category"), "INVALID_CATEGORY"), (("things", "1", "language"), "INVALID_LANGUAGE")}),
        ("submitClicks", {"clicks": [{"supporterId": w["fan_id"], "thingId": w["thing"], "url": "https://x.example/",
                                      "idempotencyKey": ""}]}, "clicks",
         {(("clicks", "0", "idempotencyKey"), "INVALID_IDEMPOTENCY_KEY"), (("clicks", "0", "thingId"),
                                                                            "INVALID_TARGET")}),
    ]


# Inputs with several fields whose refusals cannot come together, and why.
ONE_AT_A_TIME = {
    "logIn": "one refusal for any bad email or password (INVALID_CREDENTIALS): nothing to tell apart",
    "resetPassword": "the new password is judged against its account's own words, which only a valid link names",
    "changePassword": "the current password first: the new one is judged for its owner only",
    "deleteAccount": "the password first: what the account holds is told to its owner only",
    "reviewFlaggedClick": "the decision is an enum, which GraphQL's validation refuses before any field is read",
}


def multi_field_mutations() -> set[str]:
    schema = build_schema((ROOT / "schema.graphql").read_text(), assume_valid_sdl=True)
    assert schema.mutation_type is not None
    found = set()
    for name, field in schema.mutation_type.fields.items():
        arg = field.args.get("input")
        if arg is not None and len(get_named_type(arg.type).fields) >= 2:  # type: ignore[union-attr]
            found.add(name)
    return found


async def test_every_refusal_is_reported_at_once(api_url: str, system_pool: asyncpg.Pool) -> None:
    async with system_pool.acquire() as conn:
        world = await f.make_tenant_world(conn)
        async with conn.transaction():
            await set_scope(conn, Scope(world.tenant_id))
            keys = {scope: (await tenants.create_api_key(conn, tenant_id=world.tenant_id, name=scope,
                                                         scopes=[scope], created_by=world.admin_id))[1]
                    for scope in ("webhooks:write", "sites:write", "things:write", "clicks:write")}
            tokens = {who: await issue_token(conn, tenant_id=world.tenant_id, account_id=pk, ttl=timedelta(hours=1))
                      for who, pk in (("fan", world.supporter_id), ("admin", world.admin_id))}
            await conn.execute("update account_private set is_platform_admin = true where account_id = $1",
                               world.admin_id)
            fan = await conn.fetchrow("select a.handle, p.email from accounts a join account_private p"
                                      " on p.account_id = a.id where a.id = $1", world.supporter_id)
        before = await snapshot(conn)
    clients = {"anon": GraphQLClient(api_url, tenant=world.slug), "fan": GraphQLClient(api_url, tokens["fan"]),
               "admin": GraphQLClient(api_url, tokens["admin"]), "root": GraphQLClient(api_url, tokens["admin"]),
               "hooks": GraphQLClient(api_url, keys["webhooks:write"]),
               "sites": GraphQLClient(api_url, keys["sites:write"]),
               "things": GraphQLClient(api_url, keys["things:write"]),
               "clicks": GraphQLClient(api_url, keys["clicks:write"])}
    w = {"fan_email": fan["email"], "fan_handle": fan["handle"], "n": world.slug[-6:],
         "site": to_global("Site", world.site_public_id), "creator": to_global("Account", world.creator_id),
         "fan_id": to_global("Account", world.supporter_id), "thing": to_global("Thing", world.thing_id)}
    seen = set()
    for mutation, given, who, expected in cases(w):
        seen.add(mutation)
        body = clients[who].raw(f"mutation($input: {input_type(mutation)}!) {{ {mutation}(input: $input) "
                                "{ userErrors { field code message } } }", {"input": given}).json()
        assert "errors" not in body, (mutation, body)
        got = {(tuple(e["field"]) if e["field"] else None, e["code"]) for e in body["data"][mutation]["userErrors"]}
        assert got == expected, (mutation, given, got)
    assert multi_field_mutations() - seen - set(ONE_AT_A_TIME) == set(), "list the new mutation in cases()"
    async with system_pool.acquire() as conn:
        assert await snapshot(conn) == before  # refused input changed nothing


def input_type(mutation: str) -> str:
    schema = build_schema((ROOT / "schema.graphql").read_text(), assume_valid_sdl=True)
    assert schema.mutation_type is not None
    return get_named_type(schema.mutation_type.fields[mutation].args["input"].type).name  # type: ignore[union-attr]


async def snapshot(conn: asyncpg.Connection) -> dict[str, int]:
    # (click_receipts is left out: the API remembers that it refused a click, which is no change of state)
    tables = ("tenants", "accounts", "account_private", "api_keys", "budget_changes", "things", "sites", "clicks",
              "subscriptions", "journals", "entries", "payouts", "webhook_endpoints", "oauth_clients",
              "auth_tokens", "linked_accounts")
    return {t: int(await conn.fetchval(f"select count(*) from {t}")) for t in tables}
