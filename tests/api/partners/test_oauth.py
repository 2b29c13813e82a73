"""Linking a supporter's Merci account to a partner: the OAuth 2 authorization-code
flow with PKCE, end to end (consent page, code, token), then clicks the partner
sends for that supporter reaching their `me`, and refusals for everyone else."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import parse_authorization_code_response, prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from tests.api.partners.helpers import World, form_fields, http, log_in
from tests.conftest import wait_for

REDIRECT = "https://blogs.example/merci/callback"
CREATE_CLIENT = """mutation($name: String!, $uris: [String!]!) { createOAuthClient(input: {name: $name,
  redirectUris: $uris}) { oauthClient { id clientId name redirectUris } clientSecret userErrors { field code } } }"""
SUBMIT_CLICKS = """mutation($clicks: [PartnerClickInput!]!) { submitClicks(input: {clicks: $clicks}) {
  clicks { status idempotencyKey period thing { id url } } userErrors { field code message } } }"""
REGISTER = """mutation($things: [RegisterThingInput!]!) { registerThings(input: {things: $things}) {
  things { id url claimed } userErrors { field code message } } }"""
ME_CLICKS = "{ me { clicks { nodes { source idempotencyKey thing { url } } } } }"
LINKS = "{ linkedAccounts { nodes { id supporterId supporterHandle partnerSlug clientName scopes active } } }"


def client_of(world: World, partner: dict[str, Any]) -> dict[str, str]:
    out = partner["client"](CREATE_CLIENT, {"name": "Blogs app", "uris": [REDIRECT]})["createOAuthClient"]
    assert out["userErrors"] == [], out
    return {"id": out["oauthClient"]["clientId"], "secret": out["clientSecret"]}


def consent(world: World, browser: httpx.Client, client_id: str, *, scope: str = "clicks:write",
            decision: str = "allow", verifier: str | None = None) -> tuple[httpx.Response, str, str]:
    """The supporter's side: authorize → consent page → decision. Returns the redirect, state, verifier."""
    verifier = verifier or generate_token(64)
    state = generate_token(20)
    uri = prepare_grant_uri(world.url + "/oauth/authorize", client_id, "code", REDIRECT, scope, state,
                            code_challenge=create_s256_code_challenge(verifier), code_challenge_method="S256")
    page = browser.get(uri)
    assert page.status_code == 200, page.text
    assert "Blogs app" in page.text and "send Merci clicks on your behalf" in page.text
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "https://blogs.example" in csp
    fields = form_fields(page.text) | {"decision": decision}
    answer = browser.post("/oauth/authorize", data=fields, headers={"origin": world.url})
    return answer, state, verifier


def redeem(world: World, client: dict[str, str], code: str, verifier: str, **extra: str) -> httpx.Response:
    return httpx.post(world.url + "/oauth/token", auth=(client["id"], client["secret"]), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier,
        **extra})


def test_consent_flow_links_the_account_and_partner_clicks_reach_me(world: World) -> None:
    partner = world.partner()
    client = client_of(world, partner)
    key = world.api_key(partner, ["clicks:write", "things:write"])
    creator = world.sql("select id from accounts where handle = $1", partner["handle"])[0]["id"]
    from merci.ids import to_global

    world.prove_site(partner, f"https://{partner['slug']}.example/")
    things = key(REGISTER, {"things": [{"url": f"https://{partner['slug']}.example/post-{i}", "title": f"Post {i}",
                                        "ownerId": to_global("Creator", creator)} for i in range(2)]})
    things = things["registerThings"]["things"]
    fan = world.supporter()
    stranger = world.supporter()

    # The supporter is logged out: authorize sends them to Merci's login, then back.
    browser = http(world.url)
    verifier = generate_token(64)
    uri = prepare_grant_uri(world.url + "/oauth/authorize", client["id"], "code", REDIRECT, "clicks:write", "s1",
                            code_challenge=create_s256_code_challenge(verifier), code_challenge_method="S256")
    bounce = browser.get(uri)
    assert bounce.status_code == 303 and bounce.headers["location"].startswith("/embed/login?")
    nxt = parse_qs(urlsplit(bounce.headers["location"]).query)["next"][0]
    logged = log_in(browser, fan["email"], next=nxt)
    assert logged.status_code == 303 and logged.headers["location"] == nxt

    answer, state, verifier = consent(world, browser, client["id"])
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location.startswith(REDIRECT + "?")
    code = parse_authorization_code_response(location, state=state)["code"]  # checks state, as a client would

    token = redeem(world, client, code, verifier)
    assert token.status_code == 200, token.text
    body = token.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "clicks:write" and body["access_token"]
    assert body["merci_handle"] == fan["handle"] and body["merci_account_id"] == fan["id"]
    assert token.headers["cache-control"] == "no-store"

    # The partner now clicks for the linked supporter; the stranger never linked.
    out = key(SUBMIT_CLICKS, {"clicks": [
        {"supporterId": fan["id"], "thingId": things[0]["id"], "idempotencyKey": "c1"},
        {"supporterId": stranger["id"], "thingId": things[0]["id"], "idempotencyKey": "c2"},
        {"supporterId": fan["id"], "url": f"https://{partner['slug']}.example/post-1", "idempotencyKey": "c3"},
    ]})["submitClicks"]
    assert [c and c["status"] for c in out["clicks"]] == ["PENDING", None, "PENDING"]
    assert out["userErrors"] == [{"field": ["clicks", "1", "supporterId"], "code": "NOT_LINKED",
                                  "message": "this supporter has not linked their Merci account to your platform"}]
    me = world.gql.as_(fan["token"])
    clicks = wait_for(lambda: n if len(n := me(ME_CLICKS)["me"]["clicks"]["nodes"]) == 2 else None,
                      what="the partner's clicks in me")
    assert {c["source"] for c in clicks} == {"PARTNER"}
    assert {c["thing"]["url"] for c in clicks} == {t["url"] for t in things}
    assert world.gql.as_(stranger["token"])(ME_CLICKS)["me"]["clicks"]["nodes"] == []
    assert world.scalar("select count(*) from clicks where supporter_id = $1", stranger["pk"]) == 0
    # Sent again (a retry): nothing new.
    again = key(SUBMIT_CLICKS, {"clicks": [{"supporterId": fan["id"], "thingId": things[0]["id"],
                                            "idempotencyKey": "c1"}]})["submitClicks"]
    assert again["userErrors"] == [] and again["clicks"][0]["status"] == "PENDING"

    # Both sides see the link; the supporter revokes it, and the partner's clicks stop.
    mine = me(LINKS)["linkedAccounts"]["nodes"]
    assert [(link["partnerSlug"], link["active"]) for link in mine] == [(partner["slug"], True)]
    theirs = partner["client"](LINKS)["linkedAccounts"]["nodes"]
    assert [link["supporterHandle"] for link in theirs] == [fan["handle"]]
    revoked = me("""mutation($id: ID!) { revokeLinkedAccount(input: {id: $id}) {
        linkedAccount { active } userErrors { code } } }""", {"id": mine[0]["id"]})["revokeLinkedAccount"]
    assert revoked == {"linkedAccount": {"active": False}, "userErrors": []}
    late = key(SUBMIT_CLICKS, {"clicks": [{"supporterId": fan["id"], "thingId": things[1]["id"],
                                           "idempotencyKey": "c4"}]})["submitClicks"]
    assert late["clicks"] == [None] and [e["code"] for e in late["userErrors"]] == ["NOT_LINKED"]


def test_oauth_refusals(world: World) -> None:
    partner = world.partner()
    client = client_of(world, partner)
    fan = world.supporter(funds=0)
    browser = http(world.url)
    assert log_in(browser, fan["email"]).status_code == 303  # on to /account
    challenge = create_s256_code_challenge(generate_token(64))

    def authorize(**params: str) -> httpx.Response:
        base = {"response_type": "code", "client_id": client["id"], "redirect_uri": REDIRECT, "state": "st",
                "code_challenge": challenge, "code_challenge_method": "S256"}
        return browser.get("/oauth/authorize", params={k: v for k, v in (base | params).items() if v is not None})

    # An unknown client or an unregistered redirect URI: an error page, never a redirect.
    for bad in ({"client_id": "mc_1_nope-nope-nope-nope"}, {"redirect_uri": "https://evil.example/cb"}):
        page = authorize(**bad)
        assert page.status_code == 400 and "location" not in page.headers, page.text
    # Other problems go back to the client, with its state.
    for params, error in (({"code_challenge": None}, "invalid_request"),
                          ({"code_challenge_method": "plain"}, "invalid_request"),
                          ({"scope": "clicks:write wallet:drain"}, "invalid_scope"),
                          ({"response_type": "token"}, "unsupported_response_type")):
        answer = authorize(**params)
        assert answer.status_code == 303, answer.text
        query = parse_qs(urlsplit(answer.headers["location"]).query)
        assert query["error"] == [error] and query["state"] == ["st"], query

    # Denied: access_denied, and no code exists.
    denied, state, _ = consent(world, browser, client["id"], decision="deny")
    query = parse_qs(urlsplit(denied.headers["location"]).query)
    assert (query["error"], query["state"]) == (["access_denied"], [state])
    assert world.scalar("select count(*) from oauth_codes where account_id = $1", fan["pk"]) == 0

    # A consent posted from another site (or without the page's token) is refused.
    page = authorize()
    fields = form_fields(page.text) | {"decision": "allow"}
    forged = browser.post("/oauth/authorize", data=fields, headers={"origin": "https://evil.example"})
    no_token = browser.post("/oauth/authorize", data=fields | {"csrf": "x"}, headers={"origin": world.url})
    assert forged.status_code == no_token.status_code == 403
    assert world.scalar("select count(*) from oauth_codes where account_id = $1", fan["pk"]) == 0

    answer, state, verifier = consent(world, browser, client["id"])
    code = parse_authorization_code_response(answer.headers["location"], state=state)["code"]
    wrong_secret = httpx.post(world.url + "/oauth/token", auth=(client["id"], "mcs_wrong"), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier})
    assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "invalid_client"
    assert redeem(world, client, code, generate_token(64)).json()["error"] == "invalid_grant"  # wrong verifier
    assert redeem(world, client, code, verifier, grant_type="password").json()["error"] == "unsupported_grant_type"
    assert world.scalar("select count(*) from linked_accounts where account_id = $1", fan["pk"]) == 0
    ok = redeem(world, client, code, verifier)
    assert ok.status_code == 200, ok.text
    # The same code again: refused, and what it granted is revoked (RFC 6749 §4.1.2).
    reused = redeem(world, client, code, verifier)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    assert world.scalar("select revoked_at is not null from linked_accounts where account_id = $1", fan["pk"])
    # Another partner's client cannot redeem this partner's codes.
    other = client_of(world, world.partner())
    answer, state, verifier = consent(world, browser, client["id"])
    code = parse_authorization_code_response(answer.headers["location"], state=state)["code"]
    assert redeem(world, other, code, verifier).json()["error"] == "invalid_grant"  # not its code…
    assert redeem(world, client, code, verifier).status_code == 200  # …which still works for its client
