"""Likejacking, in a real browser (Debian's chromium through Playwright): a partner's
page frames the button invisibly (transparent over a decoy, shrunk to a few pixels,
covered by a decoy that lets clicks through) or without letting its script run
(sandboxed), and a supporter's real click lands on it: nothing counts. The same button
in plain view counts once it has been visible for VISIBLE_MS. Each refused click is
shown to have reached the button (frame.js marks it), so none passes by missing it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.api.embeds.test_button_browser import CHROMIUM_ARGS, SUBMIT, login_in_popup, serve
from tests.api.partners.helpers import World
from tests.conftest import need, unique, wait_for

AT = "position:absolute;left:20px;top:20px;border:0"


@pytest.fixture
def pages(world: World) -> Iterator[tuple[str, dict[str, Any]]]:
    creator = world.supporter(funds=0)
    post = f"https://{unique('blog')}.example/framed"
    world.prove_site(creator, post)
    assert world.gql.as_(creator["token"])(SUBMIT, {"url": post, "title": "Framed"})["submitThing"]["userErrors"] == []
    src = f"{world.url}/embed/button?" + urlencode({"url": post, "lang": "en"})
    link = f"{world.url}/submit?" + urlencode({"url": post, "title": "Framed"})

    def page(body: str) -> str:
        return f"<!doctype html><html><head><meta charset='utf-8'></head><body style='margin:0'>{body}</body></html>"

    decoy = f"<button style='{AT};width:220px;height:40px'>Win a prize</button>"
    server, port = serve({
        "/": page(f"<a class='merci-button' href='{link}'>Merci</a><script src='{world.url}/embed/button.js'>"
                  "</script>"),
        "/transparent": page(decoy + f"<iframe src='{src}' width='190' height='32' style='{AT};opacity:0'>"
                             "</iframe>"),
        "/tiny": page(f"<iframe src='{src}' width='24' height='24' style='{AT}'></iframe>"),
        "/covered": page(f"<iframe src='{src}' width='190' height='32' style='{AT}'></iframe>"
                         f"<div style='{AT};width:190px;height:32px;background:#fc0;pointer-events:none'>"
                         "Win a prize</div>"),
        "/sandboxed": page(f"<iframe sandbox='allow-forms allow-same-origin' src='{src}' width='190' height='32'"
                           f" style='{AT}'></iframe>"),
        "/visible": page(f"<iframe src='{src}' width='190' height='32' style='{AT}'></iframe>"),
    })
    try:
        yield f"http://localhost:{port}", {"post": post}
    finally:
        server.shutdown()
        server.server_close()


def test_only_a_button_in_plain_view_counts_a_click(world: World, pages: tuple[str, dict[str, Any]]) -> None:
    need(shutil.which("chromium") is not None, "Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    base, data = pages
    fan = world.supporter()

    def clicks() -> int:
        return int(world.scalar("select count(*) from clicks where supporter_id = $1", fan["pk"]))

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 800, "height": 400})
            page = context.new_page()
            posts: list[int] = []
            page.on("response", lambda r: posts.append(r.status) if r.request.method == "POST"
                    and "/embed/button" in r.url else None)
            page.goto(base + "/")
            login_in_popup(page, page.frame_locator("iframe.merci-button-frame"), fan["email"])

            for name, at in (("transparent", (60, 36)), ("tiny", (32, 36)), ("covered", (60, 36))):
                page.goto(f"{base}/{name}")
                button = page.frame_locator("iframe").get_by_role("button", name="Merci: thank Framed")
                expect(button).to_have_count(1)
                page.wait_for_timeout(1500)  # three times as long as a click needs in plain view
                assert button.get_attribute("data-merci-ready") is None, name
                page.mouse.click(*at)  # the supporter's real click, aimed at the decoy
                expect(button).to_have_attribute("data-merci-refused", "not-visible")
                page.wait_for_timeout(300)
                assert posts == [], name  # refused in the frame: nothing was sent

            # A frame whose script may not run posts without the proof: refused by Merci.
            page.goto(f"{base}/sandboxed")
            button = page.frame_locator("iframe").get_by_role("button", name="Merci: thank Framed")
            page.wait_for_timeout(1000)
            with page.expect_response(lambda r: r.request.method == "POST" and "/embed/button" in r.url) as resp:
                page.mouse.click(60, 36)
            assert resp.value.status == 409
            expect(page.frame_locator("iframe").get_by_role("alert")).to_contain_text("not in plain view")
            posts.clear()

            # In plain view: ready after VISIBLE_MS, and the same click counts.
            page.goto(f"{base}/visible")
            button = page.frame_locator("iframe").get_by_role("button", name="Merci: thank Framed")
            expect(button).to_have_attribute("data-merci-ready", "1")
            page.mouse.click(60, 36)
            expect(page.frame_locator("iframe").get_by_role("img", name="You thanked Framed this month")
                   ).to_be_visible()
            assert posts == [303, 200] or posts[:1] == [303]
            wait_for(lambda: clicks() == 1, what="the visible click stored")
            assert world.scalar("select thing_id is not null and client_hash is not null from clicks"
                                " where supporter_id = $1", fan["pk"])
            context.close()
        finally:
            browser.close()
    assert clicks() == 1
