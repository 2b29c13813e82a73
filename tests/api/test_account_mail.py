"""Accounts (issue 16): the password policy, email verification before money moves, no
account enumeration, password reset and change, export and deletion, over HTTP against
a real API; mail read from the dev mailbox."""

from __future__ import annotations

import statistics
import time
from typing import Any
from unittest import mock

import asyncpg
import httpx

from merci import account_mail, audit, config
from merci.ids import to_global
from tests.conftest import SIGN_UP, VERIFY_EMAIL, GraphQLClient, mailed_token, sign_up, unique

LOG_IN = """mutation($input: LogInInput!) { logIn(input: $input) { token userErrors { field code } } }"""
ME = "{ me { handle email emailVerified } }"
TOP_UP = """mutation { topUp(input: {amount: 1000}) { account { balance { amount } } userErrors { code } } }"""
FLATTR = """mutation($url: String!) { flattr(input: {url: $url, idempotencyKey: $url}) { userErrors { code } } }"""
SUBSCRIBE = """mutation($id: ID!) { subscribe(input: {thingId: $id, months: 3}) { userErrors { code } } }"""
PAYOUT = """mutation { requestPayout(input: {idempotencyKey: "p1"}) { userErrors { code } } }"""
RESEND = """mutation($email: String!) { resendVerification(input: {email: $email}) { ok userErrors { code } } }"""
REQUEST_RESET = """mutation($email: String!) { requestPasswordReset(input: {email: $email}) {
  ok userErrors { code } } }"""
RESET = """mutation($token: String!, $pw: String!) { resetPassword(input: {token: $token, newPassword: $pw}) {
  ok userErrors { field message code } } }"""
CHANGE = """mutation($old: String!, $new: String!) { changePassword(input: {currentPassword: $old, newPassword: $new}) {
  token userErrors { field message code } } }"""
DELETE = """mutation($pw: String!, $forfeit: Boolean!) {
  deleteAccount(input: {password: $pw, forfeitBalance: $forfeit}) {
  ok userErrors { field message code } } }"""
EXPORT = "{ me { dataExport } }"
PASSWORD = "correct horse battery"


def mailbox(base: str, email: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{base}/dev/mailbox", params={"to": email, "format": "json"})
    return answer.json()  # type: ignore[no-any-return]


def unverified(gql: GraphQLClient) -> dict[str, str]:
    """Signed up, logged in, the link not followed."""
    handle = unique("u_")
    email = f"{handle}@example.org"
    answer = gql(SIGN_UP, {"input": {"email": email, "password": PASSWORD, "handle": handle}})["signUp"]
    assert answer["userErrors"] == []
    token = gql(LOG_IN, {"input": {"email": email, "password": PASSWORD}})["logIn"]["token"]
    return {"handle": handle, "email": email, "token": token}


def codes(payload: dict[str, Any]) -> list[str]:
    return [e["code"] for e in payload["userErrors"]]


def test_weak_passwords_are_refused_with_the_librarys_advice(gql: GraphQLClient) -> None:
    handle = unique("pw_")
    email = f"{handle}@example.org"
    for weak in ("aaaaaaaaaa", email, f"{handle}{handle}", "password1234", "qwertyuiop"):
        data = gql(SIGN_UP, {"input": {"email": email, "password": weak, "handle": handle}})["signUp"]
        assert codes(data) == ["WEAK_PASSWORD"], (weak, data)
        assert data["userErrors"][0]["field"] == ["password"]
        assert "too easy to guess" in data["userErrors"][0]["message"]
    assert mailbox(str(gql.http.base_url), email) == []  # nothing created, nothing mailed
    long = "Zither tea: " + "x" * 980  # judged by its first characters: bounded time
    started = time.monotonic()
    data = gql(SIGN_UP, {"input": {"email": email, "password": long, "handle": handle}})["signUp"]
    assert data["userErrors"] == [] and time.monotonic() - started < 5


def test_money_moves_only_once_the_email_is_verified(gql: GraphQLClient, api_url: str) -> None:
    user = unverified(gql)
    me = gql.as_(user["token"])
    assert me(ME)["me"] == {"handle": user["handle"], "email": user["email"], "emailVerified": False}
    assert codes(me(TOP_UP)["topUp"]) == ["EMAIL_NOT_VERIFIED"]
    assert codes(me(FLATTR, {"url": f"https://{unique()}.example/post"})["flattr"]) == ["EMAIL_NOT_VERIFIED"]
    assert codes(me(SUBSCRIBE, {"id": to_global("Thing", 1)})["subscribe"]) == ["EMAIL_NOT_VERIFIED"]
    assert codes(me(PAYOUT)["requestPayout"]) == ["EMAIL_NOT_VERIFIED"]
    # Budgets are no money move: the budget waits for a balance.
    assert me("mutation { setMonthlyBudget(input: {amount: 500}) { userErrors { code } } }")[
        "setMonthlyBudget"]["userErrors"] == []
    # Verified by the link: the same session may top up at once (the cached principal is evicted).
    verified = gql(VERIFY_EMAIL, {"input": {"token": mailed_token(api_url, user["email"])}})["verifyEmail"]
    assert verified["userErrors"] == [] and verified["account"]["emailVerified"] is True
    assert me(TOP_UP)["topUp"] == {"account": {"balance": {"amount": 1000}}, "userErrors": []}
    assert me(FLATTR, {"url": f"https://{unique()}.example/post"})["flattr"]["userErrors"] == []
    # The link is good for one login: again, it logs nobody in.
    again = gql(VERIFY_EMAIL, {"input": {"token": mailed_token(api_url, user["email"])}})["verifyEmail"]
    assert again == {"token": None, "account": None, "userErrors": []}


def test_bad_and_expired_links_are_refused(gql: GraphQLClient, api_url: str) -> None:
    user = unverified(gql)
    token = mailed_token(api_url, user["email"])
    for bad in ("", "x" * 2000, token[:-2] + ("AA" if not token.endswith("AA") else "BB")):
        assert codes(gql(VERIFY_EMAIL, {"input": {"token": bad}})["verifyEmail"]) == ["INVALID_TOKEN"]
    settings = config.Settings()  # the API's secret: the development default
    account = int(token and account_mail.read_token(settings, token, salt=account_mail.VERIFY_SALT,
                                                     max_age=3600).account_id)
    with mock.patch("itsdangerous.timed.time.time", return_value=time.time() - account_mail.VERIFY_MAX_AGE - 60):
        old = account_mail.verify_token(settings, tenant_id=1, account_id=account, email=user["email"])
    assert codes(gql(VERIFY_EMAIL, {"input": {"token": old}})["verifyEmail"]) == ["TOKEN_EXPIRED"]
    other = account_mail.verify_token(settings, tenant_id=1, account_id=account, email="someone@else.org")
    assert codes(gql(VERIFY_EMAIL, {"input": {"token": other}})["verifyEmail"]) == ["INVALID_TOKEN"]
    forged = account_mail.verify_token(config.Settings(secret_key="not ours"), tenant_id=1, account_id=account,
                                       email=user["email"])
    assert codes(gql(VERIFY_EMAIL, {"input": {"token": forged}})["verifyEmail"]) == ["INVALID_TOKEN"]
    assert gql.as_(user["token"])(ME)["me"]["emailVerified"] is False


async def test_sign_up_with_a_taken_email_answers_like_a_new_one(gql: GraphQLClient, api_url: str,
                                                                 system_pool: asyncpg.Pool) -> None:
    owner = sign_up(gql)
    durations: dict[str, list[float]] = {"taken": [], "new": []}
    answers: dict[str, set[tuple[int, str, str]]] = {"taken": set(), "new": set()}
    for _ in range(3):
        for kind in ("taken", "new"):
            email = owner["email"] if kind == "taken" else f"{unique('n_')}@example.org"
            started = time.perf_counter()
            r = gql.raw(SIGN_UP, {"input": {"email": email, "password": PASSWORD, "handle": unique("h_")}})
            durations[kind].append(time.perf_counter() - started)
            body = r.json()
            body.get("extensions", {}).pop("cost", None)  # the throttle's state moves on
            answers[kind].add((r.status_code, str(body), str(sorted(r.headers))))  # (ids and dates vary)
    assert answers["taken"] == answers["new"] and len(answers["new"]) == 1
    ratio = statistics.median(durations["taken"]) / statistics.median(durations["new"])
    assert 0.5 < ratio < 2, durations  # argon2 hashes in both
    async with system_pool.acquire() as conn:
        assert await conn.fetchval("select count(*) from account_private where email = $1", owner["email"]) == 1
    notices = [m for m in mailbox(api_url, owner["email"]) if m["kind"] == "sign_up_attempt"]
    assert len(notices) == 3 and account_mail.RESET_PATH in notices[0]["body"]
    # A taken handle is no secret (handles are public): still refused.
    data = gql(SIGN_UP, {"input": {"email": f"{unique()}@example.org", "password": PASSWORD,
                                   "handle": owner["handle"]}})["signUp"]
    assert codes(data) == ["HANDLE_TAKEN"]


def test_resend_and_reset_answer_alike_for_any_email(gql: GraphQLClient, api_url: str) -> None:
    user = unverified(gql)
    known, unknown = user["email"], f"{unique('nobody_')}@example.org"
    for mutation, name in ((RESEND, "resendVerification"), (REQUEST_RESET, "requestPasswordReset")):
        a, b = gql.raw(mutation, {"email": known}), gql.raw(mutation, {"email": unknown})
        assert a.status_code == b.status_code == 200
        assert a.json()["data"] == b.json()["data"] == {name: {"ok": True, "userErrors": []}}
    assert [m["kind"] for m in mailbox(api_url, known)] == ["password_reset", "verify_email", "verify_email"]
    assert mailbox(api_url, unknown) == []
    # Past the recipient's cap, the same answer and no mail (tests multiply the limits: 3000/hour).


def test_password_reset_by_link(gql: GraphQLClient, api_url: str) -> None:
    user = unverified(gql)
    session = gql.as_(user["token"])
    assert gql(REQUEST_RESET, {"email": user["email"]})["requestPasswordReset"]["ok"] is True
    token = mailed_token(api_url, user["email"], account_mail.RESET_PATH)
    weak = gql(RESET, {"token": token, "pw": user["email"]})["resetPassword"]
    assert codes(weak) == ["WEAK_PASSWORD"] and weak["userErrors"][0]["field"] == ["newPassword"]
    assert gql(RESET, {"token": token, "pw": "a brand new passphrase"})["resetPassword"] == {
        "ok": True, "userErrors": []}
    assert session.raw(ME).json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"  # every token revoked
    assert codes(gql(RESET, {"token": token, "pw": "another new passphrase"})["resetPassword"]) == ["INVALID_TOKEN"]
    assert codes(gql(LOG_IN, {"input": {"email": user["email"], "password": PASSWORD}})["logIn"]) == [
        "INVALID_CREDENTIALS"]
    fresh = gql(LOG_IN, {"input": {"email": user["email"], "password": "a brand new passphrase"}})["logIn"]["token"]
    assert gql.as_(fresh)(ME)["me"]["emailVerified"] is True  # the link proved the address
    assert mailbox(api_url, user["email"])[0]["kind"] == "password_changed"


def test_change_password(gql: GraphQLClient) -> None:
    user = sign_up(gql)
    other = gql(LOG_IN, {"input": {"email": user["email"], "password": PASSWORD}})["logIn"]["token"]
    me = gql.as_(user["token"])
    assert codes(me(CHANGE, {"old": "not it at all", "new": "a brand new passphrase"})["changePassword"]) == [
        "INVALID_CREDENTIALS"]
    assert codes(me(CHANGE, {"old": PASSWORD, "new": "aaaaaaaaaa"})["changePassword"]) == ["WEAK_PASSWORD"]
    changed = me(CHANGE, {"old": PASSWORD, "new": "a brand new passphrase"})["changePassword"]
    assert changed["userErrors"] == [] and changed["token"].startswith("ms_")
    assert gql.as_(changed["token"])(ME)["me"]["handle"] == user["handle"]
    for revoked in (user["token"], other):
        assert gql.as_(revoked).raw(ME).json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_export_and_deletion(gql: GraphQLClient, api_url: str, system_pool: asyncpg.Pool) -> None:
    user = sign_up(gql)
    me = gql.as_(user["token"])
    me(TOP_UP)
    url = f"https://{unique()}.example/post"
    assert me(FLATTR, {"url": url})["flattr"]["userErrors"] == []
    document = me(EXPORT)["me"]["dataExport"]
    assert document["format"] == "merci.account-export/1"
    assert document["profile"]["email"] == user["email"]
    assert [(e["kind"], e["amount"]) for e in document["ledgerEntries"]] == [("topup", 1000)]
    assert set(document) >= {"clicks", "subscriptions", "payouts", "sites", "things", "budgetChanges"}

    assert codes(me(DELETE, {"pw": "not the password", "forfeit": True})["deleteAccount"]) == ["INVALID_CREDENTIALS"]
    left = me(DELETE, {"pw": PASSWORD, "forfeit": False})["deleteAccount"]
    assert codes(left) == ["BALANCE_NOT_EMPTY"] and "10.00" in left["userErrors"][0]["message"]
    assert me(DELETE, {"pw": PASSWORD, "forfeit": True})["deleteAccount"] == {"ok": True, "userErrors": []}

    assert me.raw(ME).json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert codes(gql(LOG_IN, {"input": {"email": user["email"], "password": PASSWORD}})["logIn"]) == [
        "INVALID_CREDENTIALS"]
    assert gql("query($h: String!) { creator(handle: $h) { id } }", {"h": user["handle"]})["creator"] is None
    assert mailbox(api_url, user["email"])[0]["kind"] == "account_deleted"
    async with system_pool.acquire() as conn:
        row = await conn.fetchrow(
            "select a.handle, a.display_name, p.email, p.deleted_at is not null as deleted,"
            "       (select sum(e.amount) from ledger_accounts la join entries e on e.ledger_account_id = la.id"
            "         where la.owner_account_id = a.id) as ledger"
            "  from accounts a join account_private p on p.account_id = a.id where p.email like 'deleted-%'"
            " and a.id = (select account_id from auth_tokens where token_hash = sha256($1::text::bytea))",
            user["token"])
        assert row is not None and row["deleted"] and row["display_name"] == ""
        assert row["handle"].startswith("deleted_")
        assert row["ledger"] == 1000  # the money stays where it was: forfeited, not moved
        assert [v for v in await audit.audit(conn) if str(row["handle"]) in str(v)] == []
    # The email is free again: a new sign-up gets a new account.
    handle = unique("again_")
    assert gql(SIGN_UP, {"input": {"email": user["email"], "password": PASSWORD, "handle": handle}})[
        "signUp"]["userErrors"] == []
    assert mailbox(api_url, user["email"])[0]["kind"] == "verify_email"


def test_link_pages_and_the_dev_mailbox(gql: GraphQLClient, api_url: str) -> None:
    user = unverified(gql)
    page = httpx.get(f"{api_url}/dev/mailbox", params={"to": user["email"]})
    assert page.status_code == 200 and "Confirm your email address for Merci" in page.text
    token = mailed_token(api_url, user["email"])
    form = httpx.get(f"{api_url}{account_mail.VERIFY_PATH}", params={"token": token, "lang": "fr"})
    assert form.status_code == 200 and "Confirmer mon adresse" in form.text  # a button: scanners only GET
    assert gql.as_(user["token"])(ME)["me"]["emailVerified"] is False
    refused = httpx.post(f"{api_url}{account_mail.VERIFY_PATH}", data={"token": token},
                         headers={"origin": "https://evil.example"})
    assert refused.status_code == 403
    done = httpx.post(f"{api_url}{account_mail.VERIFY_PATH}", data={"token": token}, headers={"origin": api_url})
    assert done.status_code == 200 and "merci_session=" in done.headers.get("set-cookie", "")
    assert gql.as_(user["token"])(ME)["me"]["emailVerified"] is True
    bad = httpx.post(f"{api_url}{account_mail.VERIFY_PATH}", data={"token": "nope"}, headers={"origin": api_url})
    assert bad.status_code == 400 and "INVALID_TOKEN" in bad.text

    assert gql(REQUEST_RESET, {"email": user["email"]})["requestPasswordReset"]["ok"]
    reset = mailed_token(api_url, user["email"], account_mail.RESET_PATH)
    weak = httpx.post(f"{api_url}{account_mail.RESET_PATH}", data={"token": reset, "password": "aaaaaaaaaa"},
                      headers={"origin": api_url})
    assert weak.status_code == 400 and "WEAK_PASSWORD" in weak.text
    ok = httpx.post(f"{api_url}{account_mail.RESET_PATH}", data={"token": reset, "password": "zithers and tea cups"},
                    headers={"origin": api_url})
    assert ok.status_code == 200
    assert gql(LOG_IN, {"input": {"email": user["email"], "password": "zithers and tea cups"}})["logIn"]["token"]
