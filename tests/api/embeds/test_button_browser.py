"""The button in a real browser (Debian's chromium through Playwright), across sites:
a partner page on http://localhost:<port> embeds Merci served at http://127.0.0.1:<port>.
A logged-out supporter logs in through the popup and clicks (with the keyboard); a
supporter already logged in on Merci clicks after the popup hands the button a
session; the click reaches `me`; a forged click from a third page is refused; the
creator sees their own thing. Screenshots of each state go to test-artifacts/."""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.api.partners.helpers import World
from tests.conftest import need, unique, wait_for

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SUBMIT = """mutation($url: String!, $title: String!) { submitThing(input: {url: $url, title: $title}) {
  thing { id } userErrors { code } } }"""
ME_CLICKS = "{ me { clicks { nodes { source thing { url } } } } }"


@dataclass
class Sites:
    partner: str  # http://localhost:<port>: the partner's blog
    evil: str  # http://localhost:<other port>: a third page


def serve(pages: dict[str, str]) -> tuple[ThreadingHTTPServer, int]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            body = pages.get(self.path.split("?")[0], "").encode()
            self.send_response(200 if body else 404)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


@pytest.fixture
def sites(world: World) -> Iterator[tuple[Sites, dict[str, Any]]]:
    creator = world.supporter(funds=0)
    post1, post2 = (f"https://{unique('blog')}.example/post-{i}" for i in (1, 2))
    for url, title in ((post1, "Post one"), (post2, "Article deux")):
        world.prove_site(creator, url)
        assert world.gql.as_(creator["token"])(SUBMIT, {"url": url, "title": title})["submitThing"]["userErrors"] == []

    def link(**q: str) -> str:
        return f"{world.url}/submit?" + urlencode(q)

    partner_page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Partner blog</title></head>
<body style="font-family: sans-serif">
<h1>A partner's blog</h1>
<p>Post one <a class="merci-button" href="{link(url=post1, title='Post one')}">Merci</a></p>
<p lang="fr">Article deux
  <a class="merci-button" data-lang="fr" href="{link(url=post2, title='Article deux')}">Merci</a></p>
<script src="{world.url}/embed/button.js" async></script>
</body></html>"""
    # The third page: a form aimed at Merci's click endpoint, posted into a frame of its own
    # (so the browser does send the button's partitioned cookie along).
    evil_page = f"""<!doctype html><html><body>
<iframe name="sink" width="400" height="60"></iframe>
<form id="forged" method="post" action="{world.url}/embed/button?lang=en" target="sink">
  <input name="url" value="{post2}"><input name="csrf" value="{'0' * 64}">
</form>
<script>document.getElementById("forged").submit();</script>
</body></html>"""
    partner, partner_port = serve({"/": partner_page})
    evil, evil_port = serve({"/": evil_page})
    try:
        yield (Sites(f"http://localhost:{partner_port}/", f"http://localhost:{evil_port}/"),
               {"creator": creator, "post1": post1, "post2": post2})
    finally:
        for server in (partner, evil):
            server.shutdown()
            server.server_close()


def login_in_popup(page: Any, frame: Any, email: str | None) -> None:
    """Click the logged-out button; log in in the popup (or not, if Merci knows the
    supporter already); the popup closes itself and the button reloads logged in."""
    with page.expect_popup() as popup_info:
        frame.get_by_role("button", name=re.compile("log in to thank")).click()
    popup = popup_info.value
    if email is not None:
        popup.get_by_label("Email").fill(email)
        popup.get_by_label("Password").fill("correct horse battery")
        popup.get_by_role("button", name="Log in").click()
    popup.wait_for_event("close", timeout=15_000)


def test_button_across_sites(world: World, sites: tuple[Sites, dict[str, Any]], artifacts: Path) -> None:
    need(shutil.which("chromium") is not None, "Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    urls, data = sites
    fan = world.supporter()
    regular = world.supporter()
    shots = artifacts / "embeds"
    shots.mkdir(exist_ok=True)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            # 1. Logged out: the button says so; the popup logs in; the button comes back clickable.
            context = browser.new_context(viewport={"width": 800, "height": 400})
            page = context.new_page()
            page.goto(urls.partner)
            frames = page.locator("iframe.merci-button-frame")
            expect(frames).to_have_count(2)
            button = page.frame_locator("iframe.merci-button-frame >> nth=0")
            expect(button.get_by_role("button", name="Merci: log in to thank Post one")).to_be_visible()
            expect(button.get_by_text("0 clicks")).to_be_visible()
            frames.nth(0).screenshot(path=shots / "button-logged-out.png")
            login_in_popup(page, button, fan["email"])
            clickable = button.get_by_role("button", name="Merci: thank Post one")
            expect(clickable).to_be_visible()
            frames.nth(0).screenshot(path=shots / "button-can-click.png")

            # 2. The click, from the keyboard (once the button has been in plain view long
            # enough: test_button_likejacking.py).
            expect(clickable).to_have_attribute("data-merci-ready", "1")
            clickable.focus()
            page.keyboard.press("Enter")
            expect(button.get_by_role("img", name="You thanked Post one this month")).to_be_visible()
            expect(button.get_by_role("status")).to_have_text("Thank you! Your click counts this month.")
            expect(button.get_by_text("1 click")).to_be_visible()
            frames.nth(0).screenshot(path=shots / "button-clicked.png")
            me = world.gql.as_(fan["token"])
            clicks = wait_for(lambda: me(ME_CLICKS)["me"]["clicks"]["nodes"], what="the click in me")
            assert clicks == [{"source": "CLICK", "thing": {"url": data["post1"]}}]

            # The French button on the same page shares the session (same embedding site).
            page.reload()
            french = page.frame_locator("iframe.merci-button-frame >> nth=1")
            expect(french.get_by_role("button", name="Merci : remercier Article deux")).to_be_visible()
            expect(french.get_by_text("0 clic")).to_be_visible()
            page.locator("iframe.merci-button-frame").nth(1).screenshot(path=shots / "button-fr.png")

            # 3. A third page forges a click into the supporter's session: refused, nothing counted.
            # (The browser does send the button's session along: it is partitioned under this very site.)
            assert [c.get("partitionKey") for c in context.cookies(world.url) if c["name"] == "merci_embed"] == [
                "http://localhost"]
            forged = context.new_page()
            with forged.expect_response(lambda r: r.request.method == "POST" and "/embed/button" in r.url) as resp:
                forged.goto(urls.evil)
            assert resp.value.status == 403
            expect(forged.frame_locator("iframe[name=sink]").get_by_role("alert")).to_contain_text(
                "did not come from a Merci page")
            forged.screenshot(path=shots / "forged-click-refused.png")
            assert world.scalar("select count(*) from clicks where supporter_id = $1", fan["pk"]) == 1
            context.close()

            # 4. Already logged in on Merci itself: the popup only hands over the session.
            context = browser.new_context(viewport={"width": 800, "height": 400})
            page = context.new_page()
            page.goto(f"{world.url}/embed/login")
            page.get_by_label("Email").fill(regular["email"])
            page.get_by_label("Password").fill("correct horse battery")
            page.get_by_role("button", name="Log in").click()
            # On its own, the login page ends on the account's page (not "you can close this window").
            expect(page).to_have_url(f"{world.url}/account")
            expect(page.get_by_role("heading", level=1)).to_contain_text(regular["handle"])
            page.goto(urls.partner)
            french = page.frame_locator("iframe.merci-button-frame >> nth=1")
            login_in_popup(page, page.frame_locator("iframe.merci-button-frame >> nth=0"), None)
            page.reload()
            french_button = french.get_by_role("button", name="Merci : remercier Article deux")
            expect(french_button).to_have_attribute("data-merci-ready", "1")
            french_button.click()
            expect(french.get_by_role("img", name="Vous avez remercié Article deux ce mois-ci")).to_be_visible()
            page.locator("iframe.merci-button-frame").nth(1).screenshot(path=shots / "button-fr-clicked.png")
            me = world.gql.as_(regular["token"])
            wait_for(lambda: me(ME_CLICKS)["me"]["clicks"]["nodes"] == [
                {"source": "CLICK", "thing": {"url": data["post2"]}}], what="the French click in me")
            context.close()

            # 5. The creator sees their own thing.
            context = browser.new_context(viewport={"width": 800, "height": 400})
            page = context.new_page()
            page.goto(urls.partner)
            button = page.frame_locator("iframe.merci-button-frame >> nth=0")
            login_in_popup(page, button, data["creator"]["email"])
            expect(button.get_by_role("img", name="Post one is yours")).to_be_visible()
            page.locator("iframe.merci-button-frame").nth(0).screenshot(path=shots / "button-own.png")
            page.screenshot(path=shots / "partner-page.png")
            context.close()
        finally:
            browser.close()
    for name in ("button-logged-out", "button-can-click", "button-clicked", "button-fr", "button-own",
                 "forged-click-refused"):
        assert (shots / f"{name}.png").stat().st_size > 0
