"""A browser app on another origin calls /graphql with `fetch` (Debian's chromium through
Playwright): Merci at http://127.0.0.1:<port>, and three apps on other ports of the same
host (so the browser sends the SameSite=Lax session cookie along when told to):

- the web app, listed in MERCI_CORS_ORIGINS: logs in with `fetch` (the cookie is set
  through CORS), then reads `me` with that cookie alone, and with a bearer token;
- a partner's app, listed by its tenant's admin (addCorsOrigin): its own user works with
  a bearer token and with the cookie (logged in there); the cookie of another tenant's
  user counts as not sent;
- any other origin: the browser itself refuses every call, with or without credentials,
  and says so (a CORS error, not a network one)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.api.embeds.test_button_browser import CHROMIUM_ARGS, serve
from tests.api.partners.helpers import World
from tests.conftest import need, sign_up, start_api

APP_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>An app</title></head><body>
<p>A frontend of Merci's API on another origin.</p>
<script>
const API = %s;
// One GraphQL call: what the app can read of the answer, or the error fetch raised.
window.call = async ({query, variables = {}, token = null, cookie = false, tenant = null}) => {
  const headers = {"content-type": "application/json"};
  if (token) headers["authorization"] = "Bearer " + token;
  if (tenant) headers["x-merci-tenant"] = tenant;
  try {
    const r = await fetch(API + "/graphql", {method: "POST", headers, credentials: cookie ? "include" : "omit",
                                             body: JSON.stringify({query, variables})});
    const body = await r.json();
    delete body.extensions;  // (the query's cost, graph.cost: not what these tests compare)
    return {status: r.status, body};
  } catch (e) {
    return {error: String(e)};
  }
};
</script></body></html>"""
ME = "{ me { handle } }"
LOG_IN = """mutation($email: String!) { logIn(input: {email: $email, password: "correct horse battery"}) {
  account { handle } userErrors { code } } }"""
ADD = """mutation($origin: String!) { addCorsOrigin(input: {origin: $origin}) { userErrors { code } } }"""


@dataclass
class Apps:
    web: str  # listed in MERCI_CORS_ORIGINS
    partner: str  # listed by a partner tenant
    other: str  # listed by nobody


@pytest.fixture(scope="module")
def merci(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, Apps]]:
    pages: dict[str, str] = {}
    servers = [serve(pages) for _ in range(3)]
    web, partner, other = (f"http://127.0.0.1:{port}" for _, port in servers)
    tmp = tmp_path_factory.mktemp("cors-browser")
    api, base = start_api(database_url, tmp, MERCI_CORS_ORIGINS=web)
    pages["/"] = APP_PAGE % json.dumps(base)
    try:
        yield World(base, database_url, tmp), Apps(web, partner, other)
    finally:
        api.stop()
        for server, _ in servers:
            server.shutdown()
            server.server_close()


def test_apps_on_other_origins_call_the_api_as_listed(merci: tuple[World, Apps]) -> None:
    need(shutil.which("chromium") is not None, "Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    world, apps = merci
    fan = sign_up(world.gql)  # a user of Merci's own tenant
    partner = world.partner()
    assert partner["client"](ADD, {"origin": apps.partner})["addCorsOrigin"]["userErrors"] == []
    reader = sign_up(world.gql, tenant=partner["slug"])  # a user of the partner's tenant

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            console: list[str] = []

            def open_app(url: str) -> Any:
                page = context.new_page()
                page.on("console", lambda m: console.append(m.text))
                page.goto(url + "/")
                return page

            def call(page: Any, **request: Any) -> dict[str, Any]:
                return page.evaluate("(request) => window.call(request)", request)  # type: ignore[no-any-return]

            # The web app: logs in through fetch, and the cookie set then is what authenticates.
            web = open_app(apps.web)
            logged = call(web, query=LOG_IN, variables={"email": fan["email"]}, cookie=True)
            assert logged == {"status": 200, "body": {"data": {"logIn": {
                "account": {"handle": fan["handle"]}, "userErrors": []}}}}
            assert [c["name"] for c in context.cookies(world.url)] == ["merci_session"]
            assert call(web, query=ME, cookie=True)["body"] == {"data": {"me": {"handle": fan["handle"]}}}
            assert call(web, query=ME)["body"] == {"data": {"me": None}}  # no credentials: nobody
            assert call(web, query=ME, token=fan["token"])["body"] == {"data": {"me": {"handle": fan["handle"]}}}

            # The partner's app: its users, by token or cookie; not the session of Merci's own user.
            app = open_app(apps.partner)
            assert call(app, query=ME, token=reader["token"])["body"] == {"data": {"me": {"handle": reader["handle"]}}}
            # The browser sends the fan's cookie along; it counts as not sent.
            assert call(app, query=ME, cookie=True) == {"status": 200, "body": {"data": {"me": None}}}
            logged = call(app, query=LOG_IN, variables={"email": reader["email"]}, cookie=True, tenant=partner["slug"])
            assert logged["body"]["data"]["logIn"]["userErrors"] == []
            assert call(app, query=ME, cookie=True)["body"] == {"data": {"me": {"handle": reader["handle"]}}}

            # Any other origin: the browser refuses, whatever the call carries.
            other = open_app(apps.other)
            before = len(console)
            for request in ({"query": ME}, {"query": ME, "cookie": True}, {"query": ME, "token": fan["token"]},
                            {"query": LOG_IN, "variables": {"email": fan["email"]}, "cookie": True}):
                assert call(other, **request) == {"error": "TypeError: Failed to fetch"}, request
            blocked = [m for m in console[before:] if "blocked by CORS policy" in m]
            assert len(blocked) == 4 and all(f"from origin '{apps.other}'" in m for m in blocked), console[before:]
            context.close()
        finally:
            browser.close()
