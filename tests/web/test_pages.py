"""The web app's pages over plain HTTP (no browser): each answers, its forms refuse what
did not come from them, bad input changes nothing and is told, and no page follows a
`next=` off Merci. The browser journeys are in test_journeys.py."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.api.partners.helpers import World, form_fields, http
from tests.conftest import mailed_token, start_api, unique

PASSWORD = "correct horse battery"


def post(client: httpx.Client, path: str, page: str, **data: str) -> httpx.Response:
    """Post a page's form as a browser would: its fields (CSRF token), Merci's Origin."""
    html = client.get(page).text
    return client.post(path, data=form_fields(html) | data, headers={"origin": str(client.base_url).rstrip("/")})


def signed_up(world: World) -> tuple[httpx.Client, str]:
    """A browser that signed up on /signup and followed the mailed link: logged in."""
    client = http(world.url)
    handle = unique("web_")
    email = f"{handle}@example.org"
    r = post(client, "/signup", "/signup", email=email, handle=handle, password=PASSWORD)
    assert r.status_code == 303 and r.headers["location"] == "/signup?sent=1", r.text
    token = mailed_token(world.url, email)
    r = client.post("/account/verify", data={"token": token}, headers={"origin": world.url})
    assert r.status_code == 200 and "merci_session" in client.cookies, r.text
    return client, email


def owner_handle(client: httpx.Client) -> str:
    return re.search(r"Hello, ([\w-]+)", client.get("/account").text).group(1)  # type: ignore[union-attr]


def test_everyone_pages_answer(world: World) -> None:
    client = http(world.url)
    home = client.get("/", headers={"accept-language": "fr"})
    assert home.status_code == 200 and 'lang="fr"' in home.text and "/directory" in home.text
    assert "10" in home.text
    for path in ("/signup", "/login", "/password"):
        assert client.get(path).status_code == 200, path
    assert client.get("/account").headers["location"] == "/login?next=%2Faccount"
    assert client.get("/topup").status_code == 303


def test_language_switch_is_remembered_and_stays_on_merci(world: World) -> None:
    client = http(world.url)
    r = client.get("/lang/fr", params={"next": "/signup?lang=en"})
    assert r.status_code == 303 and r.headers["location"] == "/signup"
    assert 'lang="fr"' in client.get("/signup").text
    for evil in ("https://evil.example/", "//evil.example", "/\\evil.example"):
        assert client.get("/lang/en", params={"next": evil}).headers["location"] == "/"
    assert client.get("/lang/xx").status_code == 404


def test_signup_login_dashboard_logout(world: World) -> None:
    client, email = signed_up(world)
    page = client.get("/account")
    assert page.status_code == 200 and "/topup" in page.text
    r = post(client, "/logout", "/account")
    assert r.status_code == 303 and r.headers["location"] == "/?done=loggedout"
    assert client.get("/account").status_code == 303
    r = post(client, "/login", "/login", email=email, password="wrong password!!")
    assert r.status_code == 401 and "Wrong email or password" in r.text
    r = post(client, "/login", "/login?next=/account/delete", email=email, password=PASSWORD)
    assert r.status_code == 303 and r.headers["location"] == "/account/delete"


def test_login_next_never_leaves_merci(world: World) -> None:
    client, email = signed_up(world)
    post(client, "/logout", "/account")
    for evil in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"):
        page = client.get("/login", params={"next": evil}).text
        assert 'name="next" value="/account"' in page, evil
        r = post(client, "/login", "/login", email=email, password=PASSWORD, next=evil)
        assert r.headers["location"] == "/account", evil
        post(client, "/logout", "/account")


def test_forms_refuse_other_sites_and_missing_tokens(world: World) -> None:
    client, _ = signed_up(world)
    fields = form_fields(client.get("/account").text)
    before = client.get("/account").text
    r = client.post("/account/budget", data=fields | {"amount": "2000"}, headers={"origin": "https://evil.example"})
    assert r.status_code == 403
    r = client.post("/account/budget", data={"amount": "2000"}, headers={"origin": world.url})
    assert r.status_code == 403
    r = client.post("/topup", data={"amount": "2000", "key": "k", "csrf": "x" * 64}, headers={"origin": world.url})
    assert r.status_code == 403
    assert re.sub(r'value="[^"]{40,}"', "", client.get("/account").text) == re.sub(r'value="[^"]{40,}"', "", before)


def test_budget_and_topup(world: World) -> None:
    client, _ = signed_up(world)
    r = post(client, "/account/budget", "/account", amount="custom", custom="7,50")
    assert r.status_code == 303 and r.headers["location"] == "/account?done=budget"
    assert "7.50" in client.get("/account").text
    for bad in ("abc", "1", "-5", "99999999", "1.234"):
        r = post(client, "/account/budget", "/account", amount="custom", custom=bad)
        assert r.status_code == 400 and 'role="alert"' in r.text, bad
    r = post(client, "/topup", "/topup", amount="1000")
    assert r.status_code == 303, r.text
    page = client.get("/account").text
    assert "10.00" in page
    r = post(client, "/topup", "/topup", amount="custom", custom="nope")
    assert r.status_code == 400


def test_a_names_markup_is_shown_not_run(world: World) -> None:
    client = http(world.url)
    handle = unique("x_")
    r = post(client, "/signup", "/signup", email=f"{handle}@example.org", handle=handle, password=PASSWORD,
             displayName="<script>alert(1)</script>")
    assert r.status_code == 303
    client.post("/account/verify", data={"token": mailed_token(world.url, f"{handle}@example.org")},
                headers={"origin": world.url})
    page = client.get("/account").text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


def test_export_and_delete(world: World) -> None:
    client, _ = signed_up(world)
    r = client.get("/account/export")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert "attachment" in r.headers["content-disposition"]
    r = post(client, "/account/delete", "/account/delete", password="not my password")
    assert r.status_code == 400 and client.get("/account").status_code == 200
    r = post(client, "/account/delete", "/account/delete", password=PASSWORD)
    assert r.status_code == 303 and r.headers["location"] == "/?done=deleted"
    assert client.get("/account").status_code == 303


def test_someone_elses_subscription_is_not_found(world: World) -> None:
    client, _ = signed_up(world)
    r = post(client, "/account/subscriptions/VGhpbmdTdWJzY3JpcHRpb246MQ==/cancel", "/account")
    assert r.status_code == 400 and 'role="alert"' in r.text
    assert post(client, "/account/subscriptions/x/explode", "/account").status_code == 404


def test_a_creator_sees_only_their_own_sites_and_things(world: World) -> None:
    owner, _ = signed_up(world)
    r = post(owner, "/creator/sites", "/creator", url="https://" + unique("site") + ".example/")
    assert r.status_code == 303 and r.headers["location"].startswith("/creator/sites/"), r.text
    site_page = r.headers["location"].split("?")[0]
    assert "merci-verification" in owner.get(site_page).text
    r = post(owner, "/creator/things", "/creator", url="https://" + unique("t") + ".example/p", title="Not mine")
    assert r.status_code == 303 and r.headers["location"] == "/creator?done=unclaimed", r.text
    mine = "https://" + unique("mine") + ".example/"
    world.prove_site({"handle": owner_handle(owner)}, mine)
    r = post(owner, "/creator/things", "/creator", url=mine + "post", title="<i>T</i>")
    assert r.status_code == 303 and r.headers["location"].startswith("/creator/things/"), r.text
    thing_page = r.headers["location"].split("?")[0]
    assert "&lt;i&gt;T&lt;/i&gt;" in owner.get(thing_page).text

    other, _ = signed_up(world)
    assert other.get(site_page).status_code == 404
    assert other.get(thing_page).status_code == 404
    for action in ("verify", "list", "unlist"):
        r = post(other, f"{site_page}/{action}", "/creator", title="Mine now", description="Stolen site",
                 language="en", category="software")
        assert r.status_code in (400, 404) and "merci-verification" not in r.text, action
    assert post(other, f"{site_page}/explode", "/creator").status_code == 404
    r = post(other, "/creator/sites", "/creator", url="not a url")
    assert r.status_code == 400 and 'role="alert"' in r.text
    r = post(other, "/creator/payouts", "/creator", amount="all")
    assert r.status_code == 400 and 'role="alert"' in r.text


def test_partner_pages_are_for_a_tenant_s_admins(world: World) -> None:
    client, _ = signed_up(world)
    for path in ("/partner", "/partner/webhooks", "/partner/oauth"):
        assert client.get(path).status_code == 403, path
    r = post(client, "/partner/keys", "/account", name="mine", scopes="read")
    assert r.status_code == 403
    anonymous = http(world.url)
    assert anonymous.get("/partner").headers["location"] == "/login?next=%2Fpartner"


def test_a_partner_cannot_touch_another_partner_s_things(world: World) -> None:
    one, two = world.partner(), world.partner()
    key = one["client"]("""mutation { createApiKey(input: {name: "k", scopes: ["read"]}) { apiKey { id } } }""")
    key_id = key["createApiKey"]["apiKey"]["id"]
    client = http(world.url)
    post(client, "/login", "/login", email=two["email"], password=PASSWORD, tenant=two["slug"])
    assert client.get("/partner").status_code == 200
    r = post(client, f"/partner/keys/{key_id}/revoke", "/partner")
    assert r.status_code == 400 and 'role="alert"' in r.text
    assert one["client"]("{ apiKeys(first: 5) { nodes { revokedAt } } }")["apiKeys"]["nodes"] == [{"revokedAt": None}]
    r = post(client, "/partner/webhooks", "/partner/webhooks", url="http://10.0.0.1/hook", events="CLICK_ACCEPTED")
    assert r.status_code == 400 and 'role="alert"' in r.text


def test_admin_pages_are_for_platform_admins(world: World) -> None:
    client, _ = signed_up(world)
    assert client.get("/admin").status_code == 403
    assert post(client, "/admin/tenants", "/account", slug="mine", name="Mine", feeBps="0",
                partnerShareBps="100").status_code == 403
    assert post(client, "/admin/clicks/1/release", "/account").status_code == 403


def test_platform_admins_see_every_tenant(world: World) -> None:
    partner = world.partner()  # another tenant, with its admin
    admin = world.supporter(0)
    world.sql("update account_private set is_platform_admin = true where account_id = $1", admin["pk"])
    client = http(world.url)
    post(client, "/login", "/login", email=admin["email"], password=PASSWORD)
    page = client.get("/admin")
    assert page.status_code == 200
    for slug in (partner["slug"], "merci"):
        assert f'<code class="meta">{slug}</code>' in page.text
    assert "10%" in page.text  # the public site's fee
    assert re.search(r"10\s%", client.get("/admin", headers={"accept-language": "fr"}).text)  # (a narrow space)
    r = client.get("/admin", params={"after": "not a cursor"})
    assert r.status_code == 400 and "<main" in r.text
    # The partner's admin is not a platform admin: no list of tenants, not even their own.
    other = http(world.url)
    post(other, "/login", "/login", email=partner["email"], password=PASSWORD, tenant=partner["slug"])
    assert other.get("/admin").status_code == 403


def test_garbage_in_paths_and_forms_is_a_clear_page_not_a_500(world: World) -> None:
    client, _ = signed_up(world)
    for path in ("/creator/sites/xyz", "/creator/things/xyz", "/creator/sites/" + "A" * 3000,
                 "/account/months/2026-13", "/account/months/x", "/creator/things/VGhpbmc6OTk5OTk5OTk5"):
        r = client.get(path)
        assert r.status_code in (400, 404), (path, r.status_code)
        assert "<main" in r.text
    for path in ("/account/subscriptions/xyz/pause", "/creator/sites/xyz/verify", "/creator/sites/xyz/list",
                 "/partner/keys/xyz/revoke", "/admin/clicks/xyz/release"):
        r = post(client, path, "/account", title="x" * 5000, description="", language="zz", category="nope")
        assert r.status_code in (400, 403, 404), (path, r.status_code)
    for data in ({"amount": "custom", "custom": "1e9"}, {"amount": "99999999999999999999"}, {"amount": ""}):
        assert post(client, "/account/budget", "/account", **data).status_code == 400, data
        assert post(client, "/topup", "/topup", **data).status_code == 400, data


def test_a_login_on_an_unknown_platform_is_a_wrong_login(world: World) -> None:
    client, email = signed_up(world)
    post(client, "/logout", "/account")
    r = post(client, "/login", "/login", email=email, password=PASSWORD, tenant="no-such-platform")
    assert r.status_code == 401 and "Wrong email or password" in r.text
    assert client.get("/account").status_code == 303


def test_a_spent_query_cost_budget_is_a_429_page(world: World, tmp_path: Path) -> None:
    """Pages pay query cost as any client does: past the caller's budget, a page to read
    with Retry-After, not an error."""
    svc, base = start_api(world.dsn, tmp_path, MERCI_QUERY_COST_BUCKET="500", MERCI_QUERY_COST_RESTORE_RATE="0.01",
                          MERCI_PUBLIC_URL=world.url)
    try:
        client, _ = signed_up(world)
        page = http(base)
        page.cookies = client.cookies
        answers = [page.get("/account") for _ in range(40)]  # each load takes what it actually cost
        assert answers[0].status_code == 200
        refused = next(r for r in answers if r.status_code != 200)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        assert "<html" in refused.text
    finally:
        svc.stop()


def test_a_supporter_subscribes_to_a_thing(world: World) -> None:
    from urllib.parse import unquote

    from merci.ids import to_global

    owner, _ = signed_up(world)
    mine = "https://" + unique("subs") + ".example/"
    world.prove_site({"handle": owner_handle(owner)}, mine)
    things = []
    for n, hidden in enumerate(("yes", "")):  # (form_fields posts the unlisted checkbox as checked)
        r = post(owner, "/creator/things", "/creator", url=f"{mine}post-{n}", title="<i>Monthly</i>", hidden=hidden)
        things.append(unquote(r.headers["location"].split("?")[0].rsplit("/", 1)[1]))
    unlisted, thing = things

    fan, _ = signed_up(world)
    page = fan.get("/account/subscribe", params={"thing": thing})
    assert page.status_code == 200 and "&lt;i&gt;Monthly&lt;/i&gt;" in page.text and 'name="months"' in page.text
    for bad in (unlisted, "", "xyz", "A" * 300, to_global("Thing", 999_999_999), to_global("Account", 1), "a/../b"):
        r = fan.get("/account/subscribe", params={"thing": bad})
        assert r.status_code in (400, 404) and "<main" in r.text, (bad, r.status_code)
    here = "/account/subscribe?thing=" + thing
    # Not from Merci's page: refused, nothing done.
    r = fan.post("/account/subscribe", data={"thing": thing, "months": "3"}, headers={"origin": world.url})
    assert r.status_code == 403
    r = fan.post("/account/subscribe", data=form_fields(fan.get(here).text) | {"months": "3"},
                 headers={"origin": "https://evil.example"})
    assert r.status_code == 403
    for months in ("7", "", "-1", "99999999999999999999"):
        r = post(fan, "/account/subscribe", here, months=months)
        assert r.status_code == 400 and "Choose 1, 3, 6 or 12 months." in r.text, months
    assert "&lt;i&gt;Monthly&lt;/i&gt;" not in fan.get("/account").text.split("Subscriptions")[-1]

    r = post(fan, "/account/subscribe", here, months="6")
    assert r.status_code == 303 and r.headers["location"] == "/account?done=subscribed", r.text
    account = fan.get(r.headers["location"]).text
    assert "You subscribed" in account and "&lt;i&gt;Monthly&lt;/i&gt;" in account.split("Subscriptions")[-1]
    assert "You already subscribe to this thing." in fan.get(here).text  # no second form
    r = post(fan, "/account/subscribe", "/account", thing=thing, months="3")
    assert r.status_code == 400 and "You already subscribe to this thing." in r.text

    # Its creator cannot; the unlisted one is not shown to a supporter of another tenant
    # either (what a thing shows is the API's rule: merci.things.visible_sql).
    r = post(owner, "/account/subscribe", here, months="3")
    assert r.status_code == 400 and "your own thing" in r.text
    partner = world.partner()
    other = http(world.url)
    post(other, "/login", "/login", email=partner["email"], password=PASSWORD, tenant=partner["slug"])
    assert other.get("/account/subscribe", params={"thing": unlisted}).status_code == 404
    # Nor subscribed to by its id, which would show it in the subscription (ids are
    # sequential: every unlisted thing could be read so).
    for who in (other, fan):
        r = post(who, "/account/subscribe", "/account", thing=unlisted, months="3")
        assert r.status_code == 404 and "Monthly" not in r.text


def test_a_supporter_changes_their_password(world: World) -> None:
    client, email = signed_up(world)
    new = "a new and longer password"
    r = post(client, "/account/password", "/account", currentPassword="not my password", newPassword=new)
    assert r.status_code == 400 and "This is not your current password." in r.text
    r = post(client, "/account/password", "/account", currentPassword=PASSWORD, newPassword="short")
    assert r.status_code == 400 and 'role="alert"' in r.text
    r = client.post("/account/password", data={"currentPassword": PASSWORD, "newPassword": new},
                    headers={"origin": world.url})
    assert r.status_code == 403  # no token: not from Merci's page

    elsewhere = http(world.url)  # another session of the same account: it ends
    post(elsewhere, "/login", "/login", email=email, password=PASSWORD)
    assert elsewhere.get("/account").status_code == 200
    r = post(client, "/account/password", "/account", currentPassword=PASSWORD, newPassword=new)
    assert r.status_code == 303 and r.headers["location"] == "/account?done=password", r.text
    page = client.get(r.headers["location"])
    assert page.status_code == 200 and "Your password is changed" in page.text  # still logged in here
    assert elsewhere.get("/account").status_code == 303
    again = http(world.url)
    assert post(again, "/login", "/login", email=email, password=PASSWORD).status_code == 401
    assert post(again, "/login", "/login", email=email, password=new).status_code == 303
