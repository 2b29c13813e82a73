"""Owner discovery: a click on a URL nobody registered makes a thing, at once owned by
whoever verified a site covering it; otherwise the worker reads the page (SSRF-guarded)
for `<link rel="payment">` to Merci (which proves that page as a verification link
proves a site) and `<link rel="canonical">`. The owner a link names is never proof."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.api.partners.helpers import World, form_fields, http, log_in
from tests.conftest import wait_for


@dataclass
class Pages:
    url: str
    owner: dict[str, str]  # "h": the handle the payment link names


@pytest.fixture
def served(world: World) -> Iterator[Pages]:
    creator_handle: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            head, text = "", "Hi"
            payment = f"{world.url}/submit?owner={creator_handle.get('h', 'nobody')}"
            if self.path.startswith("/with-link"):
                head = f'<link rel="payment" href="{payment}">'
            if self.path.startswith("/comment-link"):  # an anchor in the body: anyone's comment
                text = f'<a rel="payment" href="{payment}">tip me</a>'
            if self.path.startswith("/moved"):
                head = '<link rel="canonical" href="/canonical/page">'
            body = f"<!doctype html><html><head>{head}<title>A page</title></head><body>{text}</body></html>".encode()
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Pages(f"http://127.0.0.1:{server.server_address[1]}", creator_handle)
    finally:
        server.shutdown()
        server.server_close()


def click(world: World, browser: Any, **query: str) -> None:
    page = browser.get("/submit", params=query)
    assert page.status_code == 200, page.text
    done = browser.post("/submit", data=form_fields(page.text), headers={"origin": world.url})
    assert done.status_code == 303, done.text


def discovery(world: World, url: str) -> Any:
    def settled() -> Any:
        rows = world.sql("select d.status, d.method, d.error, t.owner_id, t.tenant_id from thing_discovery d"
                         " join things t on t.id = d.thing_id where t.url = $1", url)
        return rows[0] if rows and rows[0]["status"] != "pending" else None

    return wait_for(settled, what=f"discovery of {url}")


def owner_of(world: World, url: str) -> Any:
    return world.scalar("select owner_id from things where canon = merci_canon($1)", url)


def test_owners_found_by_payment_link_or_verified_site(world: World, served: Pages) -> None:
    pages = served.url
    creator = world.partner()  # a creator of another tenant: the thing moves to it
    served.owner["h"] = creator["handle"]
    verified = world.supporter(funds=0)
    world.prove_site(verified, f"{pages}/no-link/", method="meta")  # proves that path only
    fan = world.supporter()
    browser = http(world.url)
    log_in(browser, fan["email"])

    click(world, browser, url=f"{pages}/with-link/post")
    found = discovery(world, f"{pages}/with-link/post")
    assert (found["status"], found["method"]) == ("found", "payment_link")
    creator_pk = world.scalar("select id from accounts where handle = $1", creator["handle"])
    assert (found["owner_id"], found["tenant_id"]) == (creator_pk, creator["tenant_id"])
    # The page proved itself: a verified site of the creator now covers it.
    assert world.scalar("select verified_scope from sites where owner_id = $1", creator_pk) \
        == f"{pages.removeprefix('http://')}/with-link/post/"

    # Under a verified scope the thing is its owner's from the start: nothing to discover.
    click(world, browser, url=f"{pages}/no-link/post", owner=verified["handle"])
    assert wait_for(lambda: owner_of(world, f"{pages}/no-link/post"), what="the thing") == verified["pk"]
    assert world.scalar("select count(*) from thing_discovery d join things t on t.id = d.thing_id"
                        " where t.url = $1", f"{pages}/no-link/post") == 0

    # The owner a link names is a hint, not a proof: outside their scope it stays unclaimed.
    click(world, browser, url=f"{pages}/elsewhere/other", owner=verified["handle"])
    nobody = discovery(world, f"{pages}/elsewhere/other")
    assert (nobody["status"], nobody["owner_id"]) == ("none", None)

    # A payment link in the body (a comment, anyone's) proves nothing.
    click(world, browser, url=f"{pages}/comment-link/post")
    comment = discovery(world, f"{pages}/comment-link/post")
    assert (comment["status"], comment["owner_id"]) == ("none", None)

    click(world, browser, url="http://10.255.0.1/private")  # never fetched: the SSRF guard refuses it
    refused = discovery(world, "http://10.255.0.1/private")
    assert refused["status"] == "failed" and refused["error"].startswith("FORBIDDEN_ADDRESS")


def test_a_page_canonical_link_names_its_one_url(world: World, served: Pages) -> None:
    pages = served.url
    fan = world.supporter()
    browser = http(world.url)
    log_in(browser, fan["email"])
    click(world, browser, url=f"{pages}/moved/page?ref=1")
    settled = wait_for(lambda: world.sql(
        "select t.url, d.status from things t join thing_discovery d on d.thing_id = t.id"
        " where t.url like $1 and d.status <> 'pending'", f"{pages}/%"), what="discovery")
    assert [tuple(r) for r in settled] == [(f"{pages}/canonical/page", "none")]
