"""Each role's main journey through the web app, in Debian's chromium at phone width,
every page checked on the way (tests/web/browser.py: screenshot, axe-core, 375 px,
title, landmarks, keyboard focus). Screenshots: test-artifacts/web/<journey>/."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

import pytest

from tests.api.embeds.test_button_browser import serve
from tests.api.partners.helpers import World, running_world
from tests.conftest import mailed_token, service_env, unique, wait_for
from tests.web.browser import Walk, chromium

T = TypeVar("T")
PASSWORD = "correct horse battery"
SUBMIT = """mutation($url: String!, $title: String!) { submitThing(input: {url: $url, title: $title}) {
  thing { id } userErrors { code } } }"""


@pytest.fixture
def own_world(server_url: str, tmp_path: Path) -> Iterator[World]:
    """A Merci of its own for a journey that closes the current month (a month closes once)."""
    with running_world(server_url, tmp_path, "merci_web_month") as w:
        yield w


@pytest.fixture
def browser() -> Any:
    # (Per test, set up after the test's world: starting one runs an event loop, which
    # Playwright's, once running in this thread, would forbid.)
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def shots(artifacts: Path) -> Path:
    return artifacts / "web"


def expect_text(page: Any, text: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator("main")).to_contain_text(text)


def sign_up_in_browser(walk: Walk, world: World, handle: str) -> str:
    """Sign-up as a newcomer does it: the form, the mailed link, the confirmation; ends on /account."""
    page = walk.goto("/signup", "sign up")
    email = f"{handle}@example.org"
    page.get_by_label("Email").fill(email)
    page.get_by_label("Your name on Merci").fill(handle)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create my account").click()
    expect_text(walk.check("sign up: mail sent"), "we mailed you a link")
    walk.page.goto(f"{world.url}/account/verify?" + urlencode({"token": mailed_token(world.url, email)}))
    page = walk.check("confirm the address")
    page.get_by_role("button", name="Confirm my email address").click()
    page = walk.check("address confirmed")
    page.get_by_role("link", name="Go to my account").click()
    expect_text(walk.check("account, new"), f"Hello, {handle}")
    return email


def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """Setup that runs its own event loop (asyncio.run), away from Playwright's in this thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


def close_month(world: World, period: str) -> None:
    env = service_env(world.dsn)
    subprocess.run([sys.executable, "-m", "runtime.cli", "close-month", period, "--force", "--inline"],
                   env=env, check=True, timeout=120, capture_output=True, cwd=os.getcwd())


def test_everyone_reads_the_home_page_in_their_language(world: World, browser: Any, shots: Path) -> None:
    walk = Walk(browser, world.url, shots / "everyone", locale="fr-FR")
    try:
        page = walk.goto("/", "home in French")
        assert page.locator("html").get_attribute("lang") == "fr"
        expect_text(page, "commission de 10")
        expect_text(walk.goto("/signup", "sign up in French"), "Créer mon compte")
        walk.goto("/password", "forgotten password in French")
        walk.goto("/", "home in French, again")
        page.get_by_role("link", name="English").click()
        page = walk.check("home in English")
        expect_text(page, "A 10% fee")
        expect_text(page, "equally")
        page.get_by_role("link", name="Browse the directory").click()
        walk.check("directory")
        walk.goto("/login", "log in")
        walk.goto("/password", "forgotten password")
        page = walk.goto("/lang/xx", "a page that does not exist", status=404)
        expect_text(page, "This page does not exist")
    finally:
        walk.close()


def test_a_supporter_from_sign_up_to_a_closed_month(own_world: World, browser: Any, shots: Path) -> None:
    world = own_world
    # A creator with two things on a site of theirs (made through the API, as their own pages would).
    creator = off_loop(world.supporter, 0)
    site = f"https://{unique('blog')}.example"
    off_loop(world.prove_site, creator, site)
    things = []
    for n, title in enumerate(("Post <one>", "Épisode deux"), 1):
        out = world.gql.as_(creator["token"])(SUBMIT, {"url": f"{site}/post-{n}", "title": title})["submitThing"]
        assert out["userErrors"] == [], out
        things.append((f"{site}/post-{n}", title, out["thing"]["id"]))

    walk = Walk(browser, world.url, shots / "supporter")
    try:
        handle = unique("fan_")
        sign_up_in_browser(walk, world, handle)
        page = walk.page

        # Top up (the dev provider), then choose a budget.
        page.get_by_role("link", name="Top up").first.click()
        page = walk.check("top up")
        page.get_by_label("20.00").check()
        page.get_by_role("button", name="Top up").click()
        expect_text(walk.check("topped up"), "Your balance was topped up")
        page.get_by_role("group", name="Change it").get_by_text("10.00").click()
        page.get_by_role("button", name="Save the budget").click()
        expect_text(walk.check("budget saved"), "Your monthly budget is saved")

        # Thank both things from their pages (no JavaScript needed: a form each).
        for url, title, _ in things:
            walk.page.goto(f"{world.url}/submit?" + urlencode({"url": url, "title": title}))
            page = walk.check(f"say merci to {title}")
            page.get_by_role("button", name="Merci!").click()
            expect_text(walk.check(f"thanked {title}"), "Your click was accepted")

        # The projected split: two equal shares and the fee, as a chart and as a table.
        def split_shown() -> bool:
            walk.page.goto(world.url + "/account")
            return walk.page.locator("svg.chart rect").count() == 3

        wait_for(split_shown, what="both clicks in the projected split")
        page = walk.check("account, projected split")
        chart = page.locator("svg.chart")
        assert chart.get_attribute("role") == "img"
        assert "The split of" in (chart.locator("title").text_content() or "")
        expect_text(page, "Post <one>")
        expect_text(page, "€4.50")  # (10.00 − 1.00 fee) / 2

        # A subscription, started from a thing's page, then paused, resumed, cancelled.
        walk.page.goto(f"{world.url}/submit?" + urlencode({"url": things[0][0], "title": things[0][1]}))
        page = walk.check("a thanked thing's page")
        page.get_by_role("link", name="Subscribe monthly").click()
        page = walk.check("subscribe monthly")
        expect_text(page, things[0][1])
        page.get_by_label("6 months").check()
        page.get_by_role("button", name="Subscribe", exact=True).click()
        expect_text(walk.check("subscribed"), "You subscribed")
        for action, said in (("Pause", "paused"), ("Resume", "running again"), ("Cancel", "cancelled")):
            walk.page.goto(world.url + "/account")
            walk.page.get_by_role("button", name=action).first.click()
            expect_text(walk.check(f"subscription {said}"), said)

        # The month closes: its statement shows what was posted.
        period = f"{datetime.now(UTC):%Y-%m}"
        close_month(world, period)
        page = walk.goto(f"/account/months/{period}", "statement of the closed month")
        expect_text(page, "This month is closed")
        assert page.locator("svg.chart rect").count() == 3

        # The data export, then the account deleted.
        export = page.request.get(world.url + "/account/export")
        assert export.status == 200 and handle in export.text()
        # A new password (from /account), then the account deleted with it.
        page = walk.goto("/account", "account, before a new password")
        page.get_by_label("Current password").fill(PASSWORD)
        page.get_by_label("New password").fill("a new and longer password")
        page.get_by_role("button", name="Change my password").click()
        expect_text(walk.check("password changed"), "Your password is changed")
        page = walk.goto("/account/delete", "delete the account")
        page.get_by_label("Your password").fill("a new and longer password")
        if page.get_by_label("I give them up").count():
            page.get_by_label("I give them up").check()
        page.get_by_role("button", name="Delete my account for good").click()
        expect_text(walk.check("account deleted"), "Your account is deleted")
        assert re.search(r"/\?done=deleted$", walk.page.url)
    finally:
        walk.close()


FLATTR = """mutation($thing: ID!, $key: String!) { flattr(input: {thingId: $thing, idempotencyKey: $key}) {
  userErrors { code } } }"""
BUDGET = """mutation($a: Int!) { setMonthlyBudget(input: {amount: $a}) { userErrors { code } } }"""


def test_a_creator_from_adding_a_site_to_a_payout(own_world: World, browser: Any, shots: Path) -> None:
    world = own_world
    pages: dict[str, str] = {}
    server, port = serve(pages)  # the creator's blog, on this machine (the fetch guard allows loopback in tests)
    blog = f"http://127.0.0.1:{port}/blog/"
    walk = Walk(browser, world.url, shots / "creator")
    try:
        handle = unique("maker_")
        sign_up_in_browser(walk, world, handle)
        page = walk.goto("/creator", "creator, new")

        # Add the site; its page says how to prove it is theirs.
        page.get_by_label("Add a site").fill(blog)
        page.get_by_role("button", name="Add the site").click()
        page = walk.check("site added: how to prove it")
        meta = page.get_by_label("Put this in the <head> of your home page:").input_value()
        assert meta.startswith('<meta name="merci-verification"')
        pages["/blog/"] = f"<!doctype html><html><head>{meta}<title>Blog</title></head><body>Hi</body></html>"
        page.get_by_role("button", name="Check my site now").click()
        walk.check("site being checked")

        def verified() -> bool:
            walk.page.reload()
            return walk.page.get_by_role("button", name="List it in the directory").count() == 1

        wait_for(verified, what="the site verified by the worker")
        page = walk.check("site verified")
        page.get_by_label("Description").fill("Notes on making things, by hand and by code.")
        page.get_by_label("Category").select_option("software")
        page.get_by_label("Tags").fill("making, code")
        page.get_by_role("button", name="List it in the directory").click()
        expect_text(walk.check("site listed"), "Listed as")

        def in_directory() -> bool:
            walk.page.goto(world.url + "/directory?" + urlencode({"q": "making code"}))
            return walk.page.locator("ol.results li").count() >= 1

        wait_for(in_directory, what="the listed site in the directory")
        walk.check("directory: the site listed")

        # A thing on it, and its snippets.
        page = walk.goto("/creator", "creator with a site")
        page.get_by_label("Register a thing").fill(blog + "post-1")
        page.get_by_label("Title").fill("How I <b>made</b> it")
        page.get_by_role("button", name="Register the thing").click()
        page = walk.check("thing registered: snippets")
        assert "/embed/button.js" in page.get_by_label("The button").input_value()
        assert ".svg" in page.get_by_label("A badge with the click count (HTML)").input_value()
        assert 'rel="payment"' in page.get_by_label("A rel=").input_value()
        assert "/submit/auto?" in page.get_by_label("The auto-submit URL").input_value()
        thing_id = page.url.rsplit("/", 1)[1].split("?")[0]

        # A supporter (through the API) thanks it; the month closes; the earnings show.
        fan = off_loop(world.supporter, 5000)
        fan_client = world.gql.as_(fan["token"])
        assert fan_client(BUDGET, {"a": 2000})["setMonthlyBudget"]["userErrors"] == []
        from urllib.parse import unquote
        assert fan_client(FLATTR, {"thing": unquote(thing_id), "key": unique("k")})["flattr"]["userErrors"] == []
        wait_for(lambda: off_loop(world.scalar, "select count(*) from clicks where supporter_id = $1", fan["pk"]),
                 what="the click stored")
        close_month(world, f"{datetime.now(UTC):%Y-%m}")
        page = walk.goto("/creator", "creator with earnings")
        assert page.locator("svg.chart rect").count() == 1
        expect_text(page, "€18.00")

        # A payout of all of it.
        page.get_by_role("button", name="Request the payout").click()
        page = walk.check("payout requested")
        expect_text(page, "Your payout was requested")
        assert page.locator("table").last.locator("tbody tr").count() == 1
    finally:
        walk.close()
        server.shutdown()
        server.server_close()


def test_a_partner_creates_a_key_and_sees_a_webhook_delivery(world: World, browser: Any, shots: Path) -> None:
    from tests.api.partners.test_webhooks import Receiver

    partner = off_loop(world.partner)
    site = f"https://{partner['slug']}.example/"
    off_loop(world.prove_site, partner, site)
    out = partner["client"](SUBMIT, {"url": site + "hooked", "title": "Hooked <on> you"})["submitThing"]
    assert out["userErrors"] == [], out
    receiver = Receiver(failures=0)
    walk = Walk(browser, world.url, shots / "partner")
    try:
        page = walk.goto("/login", "partner: log in")
        page.get_by_label("Email").fill(partner["email"])
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_text("Signed up on a partner platform?").click()
        page.get_by_label("Platform").fill(partner["slug"])
        page.get_by_role("button", name="Log in").click()
        walk.check("partner: account")
        page = walk.goto("/partner", "partner: keys and analytics")

        # An API key with two permissions: its secret shown once; then it works.
        page.get_by_label("Name of the new key").fill("Blog sync")
        page.get_by_label("things:write").check()
        page.get_by_role("button", name="Create the key").click()
        page = walk.check("partner: key created")
        secret = page.get_by_label("The key").input_value()
        assert secret.startswith("mk_")
        expect_text(page, "read, things:write")

        # A webhook endpoint; a supporter's click shows up in its delivery log; replayed.
        page = walk.goto("/partner/webhooks", "partner: webhooks")
        page.get_by_label("Its URL").fill(receiver.url)
        page.get_by_role("button", name="Add the endpoint").click()
        page = walk.check("partner: endpoint added")
        receiver.secret = page.get_by_label("Signing secret").input_value()
        fan = off_loop(world.supporter, 5000)
        flattr = world.gql.as_(fan["token"])(FLATTR, {"thing": out["thing"]["id"], "key": unique("k")})["flattr"]
        assert flattr["userErrors"] == []
        wait_for(lambda: receiver.applied_of("click.accepted"), what="the click.accepted webhook")

        def delivered() -> bool:
            walk.page.goto(world.url + "/partner/webhooks")
            return walk.page.get_by_role("cell", name="delivered").count() >= 1

        wait_for(delivered, what="the delivery logged as delivered")
        page = walk.check("partner: a delivery in the log")
        page.get_by_role("button", name="Send CLICK_ACCEPTED again").first.click()
        expect_text(walk.check("partner: delivery replayed"), "The delivery is sent again")
        wait_for(lambda: len(receiver.posts) >= 2, what="the replay posted")

        # An OAuth client, its secret shown once.
        page = walk.goto("/partner/oauth", "partner: oauth")
        page.get_by_label("Name").fill("Blogs app")
        page.get_by_label("Redirect URIs").fill("https://blogs.example/merci/callback")
        page.get_by_role("button", name="Create the client").click()
        page = walk.check("partner: oauth client created")
        assert page.get_by_label("Client secret").input_value()

        # This month's clicks on the tenant's things, as a chart.
        page = walk.goto("/partner", "partner: analytics with a click")
        assert page.locator("svg.chart rect").count() == 1
        expect_text(page, "Hooked <on> you")
    finally:
        walk.close()
        receiver.server.shutdown()
        receiver.server.server_close()


def test_a_platform_admin_reviews_held_clicks_and_creates_a_tenant(world: World, browser: Any, shots: Path) -> None:
    from tests.api.test_flagged_clicks import flagged_click

    admin = off_loop(world.supporter, 0)
    off_loop(world.sql, "update account_private set is_platform_admin = true where account_id = $1", admin["pk"])
    fan = off_loop(world.supporter, 0)
    for _ in range(2):
        off_loop(flagged_click, world.dsn, fan)
    walk = Walk(browser, world.url, shots / "admin")
    try:
        page = walk.goto("/login", "admin: log in")
        page.get_by_label("Email").fill(admin["email"])
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        walk.check("admin: account")
        page.get_by_role("link", name="Admin").click()
        page = walk.check("admin: the review queue")
        expect_text(page, fan["handle"])
        page.get_by_role("button", name="Release").first.click()
        expect_text(walk.check("admin: a click released"), "The click is reviewed")
        page.get_by_role("button", name="Reject").first.click()
        walk.check("admin: a click rejected")
        page = walk.goto("/admin?status=RELEASED", "admin: released clicks")
        expect_text(page, "released")

        slug = unique("blogs-").replace("_", "-")
        page.get_by_label("Slug").fill(slug)
        page.get_by_label("Name", exact=True).fill("Blogs & co")
        page.get_by_label("The platform's share").fill("20")
        page.get_by_role("button", name="Create the tenant").click()
        page = walk.check("admin: tenant created")
        expect_text(page, "The tenant is created")
        expect_text(page, slug)  # the list of tenants, newest first
        assert off_loop(world.scalar, "select partner_share_bps from tenants where slug = $1", slug) == 2000
    finally:
        walk.close()


def test_a_forgotten_password_is_reset_by_the_mailed_link(world: World, browser: Any, shots: Path) -> None:
    fan = off_loop(world.supporter, 0)
    walk = Walk(browser, world.url, shots / "password")
    try:
        page = walk.goto("/login", "log in")
        page.get_by_role("link", name="Forgot your password?").click()
        page = walk.check("forgotten password")
        page.get_by_label("Email").fill(fan["email"])
        page.get_by_role("button", name="Send the link").click()
        expect_text(walk.check("link mailed"), "a link is on its way")
        token = wait_for(lambda: _reset_token(world.url, fan["email"]), what="the reset mail")
        page = walk.goto("/account/reset?" + urlencode({"token": token}), "choose a new password")
        page.get_by_label("New password").fill("a new and longer password")
        page.get_by_role("button", name="Change my password").click()
        page = walk.check("password changed")
        page.get_by_role("link", name="Log in").last.click()
        page = walk.check("log in again")
        page.get_by_label("Email").fill(fan["email"])
        page.get_by_label("Password").fill("a new and longer password")
        page.get_by_role("button", name="Log in").click()
        expect_text(walk.check("logged in with the new password"), "Hello")
    finally:
        walk.close()


def _reset_token(base: str, email: str) -> str | None:
    try:
        return mailed_token(base, email, "/account/reset")
    except AssertionError:
        return None
