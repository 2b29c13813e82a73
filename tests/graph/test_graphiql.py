"""GraphiQL works offline: its page loads nothing from a CDN, every file it loads is
Merci's own and matches the page's integrity hash, and it renders in a browser that
cannot reach the internet."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil

import httpx

from tests.conftest import need

ASSET = re.compile(r"""<(?:script|link)\b[^>]*?(?:src|href)="([^"]+)"[^>]*?integrity="([^"]+)\"""", re.S)


def test_the_page_loads_only_merci_s_own_files(api_url: str) -> None:
    page = httpx.get(api_url + "/graphql", headers={"accept": "text/html"}, timeout=30)
    assert page.status_code == 200 and "graphiql" in page.text
    assert "unpkg.com" not in page.text and "cdn" not in page.text.lower()
    assets = ASSET.findall(page.text)
    assert len(assets) == 7, assets
    for url, integrity in assets:
        assert url.startswith("/graphiql/"), url
        got = httpx.get(api_url + url, timeout=30)
        assert got.status_code == 200, url
        digest = "sha384-" + base64.b64encode(hashlib.sha384(got.content).digest()).decode()
        assert digest == integrity, url


def test_graphiql_renders_without_the_internet(api_url: str) -> None:
    need(shutil.which("chromium") is not None, "Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    from tests.api.embeds.test_button_browser import CHROMIUM_ARGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            # Anything not served by Merci fails at once, as it would offline.
            page.route(re.compile(r"^(?!" + re.escape(api_url) + ").*"), lambda route: route.abort())
            page.goto(api_url + "/graphql")
            expect(page.locator(".graphiql-query-editor")).to_be_visible(timeout=15_000)
            expect(page.get_by_text("Loading...")).to_have_count(0)
        finally:
            browser.close()
