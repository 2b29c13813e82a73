"""A new supporter, in a real browser (Debian's chromium): clicks a partner's button,
has no means, follows its "Top up" to Merci's /topup, pays on (the fake) Stripe Checkout,
comes back, and the click goes through. The balance grew only by Stripe's signed webhook."""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.api.embeds.test_button_browser import CHROMIUM_ARGS, ME_CLICKS, SUBMIT, login_in_popup, serve
from tests.api.partners.helpers import World
from tests.conftest import (
    Service,
    create_database,
    drop_database,
    free_port,
    need,
    service_env,
    start_worker,
    unique,
    wait_for,
    wait_http,
)
from tests.payments.conftest import KEY, SECRET
from tests.payments.helpers import audited

BALANCE = "{ me { balance { amount } } }"


@pytest.fixture(scope="module")
def card_world(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Merci with Stripe (a fake of its own, delivering to this Merci), on a database of its own."""
    from merci.db import migrate

    tmp = tmp_path_factory.mktemp("card-world")
    dsn = create_database(server_url, "merci_cards")
    asyncio.run(migrate(dsn))
    fake_port, port = free_port(), free_port()
    base, fake = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{fake_port}"
    stripe = {"STRIPE_API_KEY": KEY, "STRIPE_WEBHOOK_SECRET": SECRET, "STRIPE_API_BASE": fake,
              "MERCI_PUBLIC_URL": base}
    services = [Service([sys.executable, "-m", "tests.payments.fake_stripe", "--port", str(fake_port)],
                        service_env(dsn, FAKE_STRIPE_WEBHOOK_SECRET=SECRET,
                                    FAKE_STRIPE_WEBHOOK_URL=f"{base}/webhooks/stripe"), tmp / "fake.log")]
    try:
        wait_http(f"{fake}/healthz", services[0])
        services.append(Service([sys.executable, "-m", "runtime.cli", "serve", "all", "--port", str(port), "--quiet"],
                                service_env(dsn, **stripe), tmp / "api.log"))
        services.append(start_worker(dsn, tmp / "worker.log", **stripe))
        wait_http(base + "/healthz", services[1])
        yield World(base, dsn, tmp)
    finally:
        for svc in reversed(services):
            svc.stop()
        drop_database(server_url, dsn)


def test_a_new_supporter_tops_up_by_card_and_the_click_goes_through(card_world: World, artifacts: Path) -> None:
    need(shutil.which("chromium") is not None, "Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    world = card_world
    creator = world.supporter(funds=0)
    post = f"https://{unique('blog')}.example/post"
    world.prove_site(creator, post)
    assert world.gql.as_(creator["token"])(SUBMIT, {"url": post, "title": "A post"})["submitThing"]["userErrors"] == []
    link = f"{world.url}/submit?" + urlencode({"url": post, "title": "A post"})
    partner, partner_port = serve({"/": f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Partner blog</title></head><body><h1>A partner's blog</h1>
<p>A post <a class="merci-button" href="{link}">Merci</a></p>
<script src="{world.url}/embed/button.js" async></script></body></html>"""})
    fan = world.supporter(funds=0)  # new: no money yet
    me = world.gql.as_(fan["token"])
    shots = artifacts / "payments"
    shots.mkdir(exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            try:
                context = browser.new_context(viewport={"width": 900, "height": 700})
                page = context.new_page()
                page.goto(f"http://localhost:{partner_port}/")
                button = page.frame_locator("iframe.merci-button-frame")
                login_in_popup(page, button, fan["email"])
                top_up = button.get_by_role("link", name=re.compile("Top up your Merci balance to thank A post"))
                expect(top_up).to_be_visible()
                page.locator("iframe.merci-button-frame").screenshot(path=shots / "button-no-means.png")

                # The button's "Top up" opens Merci's /topup; its form goes to Stripe's checkout.
                with page.expect_popup() as popup_info:
                    top_up.click()
                shop = popup_info.value
                expect(shop.get_by_role("heading", level=1)).to_have_text("Top up")
                shop.screenshot(path=shots / "topup-page.png")
                shop.get_by_role("button", name="Top up").click()
                expect(shop).to_have_title("Fake Stripe Checkout")
                assert me(BALANCE)["me"]["balance"]["amount"] == 0
                shop.screenshot(path=shots / "checkout.png")
                shop.get_by_role("button", name=re.compile(r"^Pay ")).click()
                expect(shop).to_have_url(re.compile(re.escape(world.url) + r"/topup\?paid=\d+"))
                expect(shop.get_by_role("status")).to_contain_text("your payment is being confirmed")
                shop.screenshot(path=shots / "topup-paid.png")
                wait_for(lambda: me(BALANCE)["me"]["balance"]["amount"] > 0, what="the webhook's credit")
                shop.close()

                # Back on the partner's page: the click goes through.
                page.reload()
                thank = button.get_by_role("button", name="Merci: thank A post")
                expect(thank).to_have_attribute("data-merci-ready", "1")
                thank.click()
                expect(button.get_by_role("img", name="You thanked A post this month")).to_be_visible()
                page.locator("iframe.merci-button-frame").screenshot(path=shots / "button-thanked.png")
                clicks = wait_for(lambda: me(ME_CLICKS)["me"]["clicks"]["nodes"], what="the click in me")
                assert clicks == [{"source": "CLICK", "thing": {"url": post}}]
                context.close()
            finally:
                browser.close()
    finally:
        partner.shutdown()
        partner.server_close()
    assert me(BALANCE)["me"]["balance"]["amount"] == 1000  # the page's second preset, 10.00
    assert world.scalar("select count(*) from journals where kind = 'topup'") == 1
    audited(world.dsn)
