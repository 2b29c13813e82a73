"""Owner discovery: a click on a URL nobody registered makes an unclaimed thing; the
worker reads the page (SSRF-guarded) for `<link rel="payment">` to Merci, or trusts
the owner a link names when they verified a site for that host."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.partners.helpers import World, form_fields, http, log_in


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
            head = ""
            if self.path.startswith("/with-link"):
                head = f'<link rel="payment" href="{world.url}/submit?owner={creator_handle["h"]}">'
            body = f"<!doctype html><html><head>{head}<title>A page</title></head><body>Hi</body></html>".encode()
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


def test_owners_found_by_payment_link_or_verified_site(world: World, served: Pages) -> None:
    pages = served.url
    creator = world.partner()  # a creator of another tenant: the thing moves to it
    served.owner["h"] = creator["handle"]
    verified = world.supporter(funds=0)
    world.sql("insert into sites (tenant_id, owner_id, url, host, verification_token, verified_at, verification_method)"
              " select tenant_id, id, 'http://127.0.0.1/', '127.0.0.1', 'tok', now(), 'meta' from accounts"
              " where id = $1", verified["pk"])
    fan = world.supporter()
    browser = http(world.url)
    log_in(browser, fan["email"])

    click(world, browser, url=f"{pages}/with-link/post")
    found = discovery(world, f"{pages}/with-link/post")
    assert (found["status"], found["method"]) == ("found", "payment_link")
    creator_pk = world.scalar("select id from accounts where handle = $1", creator["handle"])
    assert (found["owner_id"], found["tenant_id"]) == (creator_pk, creator["tenant_id"])

    click(world, browser, url=f"{pages}/no-link/post", owner=verified["handle"])
    by_site = discovery(world, f"{pages}/no-link/post")
    assert (by_site["status"], by_site["method"], by_site["owner_id"]) == ("found", "verified_site", verified["pk"])

    click(world, browser, url=f"{pages}/no-link/other")  # no hint, no link: stays unclaimed (escrow)
    nobody = discovery(world, f"{pages}/no-link/other")
    assert (nobody["status"], nobody["owner_id"]) == ("none", None)

    click(world, browser, url="http://10.255.0.1/private")  # never fetched: the SSRF guard refuses it
    refused = discovery(world, "http://10.255.0.1/private")
    assert refused["status"] == "failed" and refused["error"].startswith("FORBIDDEN_ADDRESS")
