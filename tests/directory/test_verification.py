"""Site verification against real HTTP servers on loopback: each of the three proofs
works, and wrong tokens, redirects to private addresses, oversized pages and non-HTTP
schemes are refused. One test goes the whole way: GraphQL, the broker, a worker."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from merci import sites
from merci.fetch import FetchPolicy
from tests.conftest import GraphQLClient, sign_up, start_worker
from tests.directory.helpers import new_tenant, person

LOOPBACK = FetchPolicy(allow_loopback=True, max_bytes=200_000, timeout=5)
PUBLIC_URL = "http://127.0.0.1:8000"  # the test services' default MERCI_PUBLIC_URL


class Pages(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.pages: dict[str, tuple[int, bytes, dict[str, str]]] = {}
        self.well_known: list[str] = []

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


class Handler(http.server.BaseHTTPRequestHandler):
    server: Pages

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == sites.WELL_KNOWN_PATH:
            status, body, headers = 200, "\n".join(self.server.well_known).encode(), {"Content-Type": "text/plain"}
        else:
            status, body, headers = self.server.pages.get(self.path, (404, b"not found", {}))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server() -> Iterator[Pages]:
    pages = Pages()
    thread = threading.Thread(target=pages.serve_forever, daemon=True)
    thread.start()
    yield pages
    pages.shutdown()
    pages.server_close()


def html(head: str) -> tuple[int, bytes, dict[str, str]]:
    return 200, f"<!doctype html><html><head>{head}</head><body>hi</body></html>".encode(), {
        "Content-Type": "text/html"}


async def add(conn: asyncpg.Connection, url: str) -> tuple[int, str, str]:
    """(site id, token, owner handle) of a new unverified site."""
    tid, _ = await new_tenant(conn)
    owner = await person(conn, tid, "creator")
    site_id = await sites.add_site(conn, tenant_id=tid, owner_id=owner, url=url)
    row = await conn.fetchrow("select s.verification_token, a.handle from sites s join accounts a"
                              " on a.id = s.owner_id where s.id = $1", site_id)
    return site_id, row["verification_token"], row["handle"]


async def verify(conn: asyncpg.Connection, site_id: int) -> tuple[sites.Outcome, asyncpg.Record]:
    outcome = await sites.verify(conn, site_id=site_id, public_url=PUBLIC_URL, policy=LOOPBACK)
    assert outcome is not None
    row = await conn.fetchrow("select verified_at, verification_method, verification_error from sites where id = $1",
                              site_id)
    return outcome, row


async def test_meta_tag(system_pool: asyncpg.Pool, server: Pages) -> None:
    async with system_pool.acquire() as conn:
        site_id, token, _ = await add(conn, f"{server.origin}/meta/")
        server.pages["/meta/"] = html(f'<title>x</title><meta name="merci-verification" content="{token}">')
        outcome, row = await verify(conn, site_id)
    assert outcome.method == "meta" and row["verified_at"] is not None and row["verification_error"] is None


async def test_payment_link(system_pool: asyncpg.Pool, server: Pages) -> None:
    async with system_pool.acquire() as conn:
        site_id, _, handle = await add(conn, f"{server.origin}/link/")
        href = sites.submit_url(PUBLIC_URL, handle, f"{server.origin}/link/").replace("&", "&amp;")
        server.pages["/link/"] = html(f'<link rel="stylesheet" href="/s.css"><link rel="payment" href="{href}">')
        outcome, row = await verify(conn, site_id)
    assert outcome.method == "link" and row["verification_method"] == "link"


async def test_well_known_file(system_pool: asyncpg.Pool, server: Pages) -> None:
    async with system_pool.acquire() as conn:
        site_id, token, _ = await add(conn, f"{server.origin}/plain/")
        server.pages["/plain/"] = html("<title>nothing here</title>")
        server.well_known.append(token)
        outcome, row = await verify(conn, site_id)
    assert outcome.method == "well_known" and row["verification_method"] == "well_known"


@pytest.mark.parametrize(("path", "page", "why"), [
    ("/wrong-token/", html('<meta name="merci-verification" content="merci-not-the-token">'), "no <meta"),
    ("/someone-else/", html(f'<link rel="payment" href="{PUBLIC_URL}/submit?owner=someone_else">'), "no <meta"),
    ("/elsewhere/", html('<link rel="payment" href="https://evil.example/submit?owner=HANDLE">'), "no <meta"),
    ("/to-private/", (302, b"", {"Location": "http://10.0.0.1/admin"}), "FORBIDDEN_ADDRESS"),
    ("/to-metadata/", (302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"}), "FORBIDDEN_ADDRESS"),
    ("/huge/", (200, b"<html>" + b"x" * 300_000, {"Content-Type": "text/html"}), "TOO_LARGE"),
    ("/to-ftp/", (302, b"", {"Location": "ftp://127.0.0.1/token.txt"}), "BAD_SCHEME"),
])
async def test_refusals(system_pool: asyncpg.Pool, server: Pages, path: str,
                        page: tuple[int, bytes, dict[str, str]], why: str) -> None:
    async with system_pool.acquire() as conn:
        site_id, token, handle = await add(conn, f"{server.origin}{path}")
        status, body, headers = page
        server.pages[path] = (status, body.replace(b"HANDLE", handle.encode()), headers)
        outcome, row = await verify(conn, site_id)
    assert not outcome.verified
    assert row["verified_at"] is None and why in row["verification_error"], row["verification_error"]
    assert token not in server.well_known


async def test_non_http_schemes_are_refused_up_front(system_pool: asyncpg.Pool) -> None:
    async with system_pool.acquire() as conn:
        tid, _ = await new_tenant(conn)
        owner = await person(conn, tid, "creator")
        for url in ("ftp://example.org/", "file:///etc/passwd", "javascript:alert(1)", "gopher://x.example/",
                    "http://", "not a url", "https://exa mple.org/"):
            with pytest.raises(sites.UserError) as err:
                await sites.add_site(conn, tenant_id=tid, owner_id=owner, url=url)
            assert err.value.code == "INVALID_URL" and err.value.field == "url"


ADD = """mutation($url: String!) { addSite(input: {url: $url}) {
  site { id verified verification { status token metaTag linkTag wellKnownUrl wellKnownContent } }
  userErrors { field message code } } }"""
VERIFY = """mutation($id: ID!) { verifySite(input: {siteId: $id}) {
  site { verification { status } } userErrors { code } } }"""
STATUS = """query($id: ID!) { site(id: $id) { verified verification { status method error checkedAt } } }"""
LIST = """mutation($input: ListSiteInput!) { listSite(input: $input) {
  site { listed title tags category } userErrors { field message code } } }"""


def test_verify_through_graphql_and_a_worker(gql: GraphQLClient, database_url: str, tmp_path: Path,
                                             server: Pages) -> None:
    me = sign_up(gql)
    client = gql.as_(me["token"])
    added = client(ADD, {"url": f"{server.origin}/end-to-end/"})["addSite"]
    assert added["userErrors"] == []
    site = added["site"]
    v = site["verification"]
    assert v["status"] == "UNVERIFIED" and v["metaTag"] == f'<meta name="merci-verification" content="{v["token"]}">'
    assert f"owner={me['handle']}" in v["linkTag"] and v["wellKnownUrl"] == f"{server.origin}/.well-known/merci.txt"
    # Not verified yet: it cannot be listed.
    listing = {"siteId": site["id"], "title": "End to end", "description": "Verified by a worker.",
               "language": "en", "category": "software", "tags": ["Test", "test", "e2e"]}
    refused = client(LIST, {"input": listing})["listSite"]
    assert refused["userErrors"][0]["code"] == "NOT_VERIFIED" and refused["site"] is None
    # Someone else can neither see the token nor ask for the check.
    other = gql.as_(sign_up(gql)["token"])
    assert other(STATUS, {"id": site["id"]})["site"] is None
    assert other(VERIFY, {"id": site["id"]})["verifySite"]["userErrors"][0]["code"] == "NOT_FOUND"

    server.pages["/end-to-end/"] = html(f'<meta name="merci-verification" content="{v["token"]}">')
    worker = start_worker(database_url, tmp_path / "worker.log")
    try:
        pending = client(VERIFY, {"id": site["id"]})["verifySite"]
        assert pending["userErrors"] == [] and pending["site"]["verification"]["status"] == "PENDING"
        deadline = time.monotonic() + 30
        while True:
            status = client(STATUS, {"id": site["id"]})["site"]
            if status["verification"]["status"] != "PENDING" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        worker.stop()
    assert status["verified"] is True, worker.output()[-3000:]
    assert status["verification"] == {**status["verification"], "status": "VERIFIED", "method": "META", "error": None}
    listed = client(LIST, {"input": listing})["listSite"]
    assert listed["userErrors"] == []
    assert listed["site"] == {"listed": True, "title": "End to end", "tags": ["test", "e2e"], "category": "software"}


async def test_a_site_s_proof_shows_only_to_who_may_change_it(api_url: str, system_pool: asyncpg.Pool) -> None:
    """The owner, the tenant's admins and its `sites:write` keys see the token; a `read`
    key of the same tenant sees the site (unlisted ones too) but not how to prove it."""
    from datetime import timedelta

    from merci import tenants
    from merci.accounts import issue_token
    from merci.db import Scope, set_scope
    from merci.ids import to_global
    from tests.factories import make_tenant_world

    async with system_pool.acquire() as conn:
        w = await make_tenant_world(conn)
        async with conn.transaction():
            await set_scope(conn, Scope(w.tenant_id))
            _, writer = await tenants.create_api_key(conn, tenant_id=w.tenant_id, name="sites", scopes=["sites:write"],
                                                     created_by=w.admin_id)
            admin, owner, fan = [await issue_token(conn, tenant_id=w.tenant_id, account_id=a, ttl=timedelta(hours=1))
                                 for a in (w.admin_id, w.creator_id, w.supporter_id)]
    query = "query($id: ID!) { site(id: $id) { id verification { token metaTag wellKnownContent } } }"
    for site in (w.site_private_id, w.site_public_id):
        for name, token, sees in (("read key", w.api_key, False), ("sites:write key", writer, True),
                                  ("admin", admin, True), ("owner", owner, True), ("supporter", fan, False)):
            found = GraphQLClient(api_url, token=token)(query, {"id": to_global("Site", site)})["site"]
            if found is None:  # an unlisted site: only its tenant's privileged see it at all
                assert (name, site) == ("supporter", w.site_private_id)
                continue
            verification = found["verification"]
            assert (verification is not None) == sees, (name, site, verification)
            if sees:
                assert verification["token"] == "tok" and "tok" in verification["metaTag"]
