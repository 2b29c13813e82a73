"""A Merci of its own for partner and embed tests: a database, the API (knowing its
public URL) and a worker whose webhook retries back off in milliseconds."""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx

from merci.config import Settings
from tests.conftest import (
    GraphQLClient,
    Service,
    create_database,
    drop_database,
    free_port,
    prove_site,
    service_env,
    sign_up,
    start_worker,
    wait_http,
)

T = TypeVar("T")
FAST_WEBHOOKS = {"MERCI_WEBHOOK_MIN_BACKOFF_MS": "100", "MERCI_WEBHOOK_MAX_BACKOFF_MS": "300",
                 "MERCI_WEBHOOK_MAX_RETRIES": "3", "MERCI_WEBHOOK_POLL_MS": "150"}
TOP_UP = """mutation($a: Int!) { topUp(input: {amount: $a}) { userErrors { code } } }"""
CREATE_KEY = """mutation($name: String!, $scopes: [String!]!) { createApiKey(input: {name: $name, scopes: $scopes}) {
  apiKey { id scopes } secret userErrors { field code message } } }"""


@dataclass
class World:
    url: str
    dsn: str
    tmp: Path

    @property
    def gql(self) -> GraphQLClient:
        return GraphQLClient(self.url)

    def sql(self, query: str, *args: Any) -> Any:
        """One statement as merci_system (sees every tenant), for setup and checks."""
        async def go() -> Any:
            conn = await asyncpg.connect(Settings(database_url=self.dsn).derived().system_database_url)
            try:
                return await conn.fetch(query, *args)
            finally:
                await conn.close()

        # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, go()).result()

    def scalar(self, query: str, *args: Any) -> Any:
        rows = self.sql(query, *args)
        return rows[0][0] if rows else None

    def supporter(self, funds: int = 5000, tenant: str | None = None) -> dict[str, Any]:
        user = sign_up(self.gql, tenant=tenant)
        if funds:
            errors = self.gql.as_(user["token"])(TOP_UP, {"a": funds})["topUp"]["userErrors"]
            assert errors == [], errors
        user["pk"] = int(self.scalar("select id from accounts where handle = $1", user["handle"]))
        return user

    def prove_site(self, user: dict[str, Any], url: str, method: str = "well_known") -> int:
        """A verified site of `user` covering `url` (its host; with `meta`, its path)."""
        return prove_site(self.dsn, user["handle"], url, method)

    def partner(self) -> dict[str, Any]:
        """A partner tenant and its admin (a session token)."""
        slug = "p-" + secrets.token_hex(4)
        self.sql("insert into tenants (slug, name, partner_share_bps) values ($1, $2, 2000)", slug, f"Blogs {slug}")
        admin = sign_up(self.gql, tenant=slug)
        self.sql("update account_private set is_tenant_admin = true where account_id ="
                 " (select id from accounts where handle = $1)", admin["handle"])
        admin["slug"] = slug
        admin["tenant_id"] = int(self.scalar("select id from tenants where slug = $1", slug))
        admin["client"] = self.gql.as_(admin["token"])
        return admin

    def api_key(self, partner: dict[str, Any], scopes: list[str]) -> GraphQLClient:
        out = partner["client"](CREATE_KEY, {"name": "k", "scopes": scopes})["createApiKey"]
        assert out["userErrors"] == [], out
        return GraphQLClient(self.url, out["secret"])


@contextmanager
def running_world(server_url: str, tmp: Path, prefix: str, **worker_env: str) -> Iterator[World]:
    from merci.db import migrate

    dsn = create_database(server_url, prefix)
    asyncio.run(migrate(dsn))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = Service([sys.executable, "-m", "runtime.cli", "serve", "all", "--port", str(port), "--quiet"],
                  service_env(dsn, MERCI_PUBLIC_URL=base), tmp / "api.log")
    worker = start_worker(dsn, tmp / "worker.log", threads=4, MERCI_PUBLIC_URL=base, **(FAST_WEBHOOKS | worker_env))
    try:
        wait_http(base + "/healthz", api)
        yield World(base, dsn, tmp)
    finally:
        api.stop()
        worker.stop()
        drop_database(server_url, dsn)




def http(base: str) -> httpx.Client:
    """A browser-like client: keeps cookies, does not follow redirects by itself."""
    return httpx.Client(base_url=base, follow_redirects=False, timeout=30)


def form_fields(html: str) -> dict[str, str]:
    """The named inputs of a page's form (hidden ones included)."""
    from html.parser import HTMLParser

    fields: dict[str, str] = {}

    class Inputs(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            a = dict(attrs)
            if tag == "input" and a.get("name"):
                fields[str(a["name"])] = a.get("value") or ""

    Inputs().feed(html)
    return fields


def log_in(client: httpx.Client, email: str, password: str = "correct horse battery", **query: str) -> httpx.Response:
    """Merci's login page, as a browser fills it in (cookie, CSRF field, Origin)."""
    from urllib.parse import urlencode

    path = "/embed/login" + ("?" + urlencode(query) if query else "")
    page = client.get(path)
    assert page.status_code == 200, page.text
    fields = form_fields(page.text) | {"email": email, "password": password}
    return client.post(path, data=fields, headers={"origin": str(client.base_url).rstrip("/")})
