"""Hidden things are unlisted: they show to their owner, to their tenant's admins and
API keys, and to the supporters who clicked them (their own history), and to nobody
else, whichever way they are read: thing(id:), node(id:), thingByUrl(url:), a
creator's things, a site's things."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg

from merci.accounts import issue_token
from merci.db import Scope, set_scope
from merci.ids import to_global
from tests import factories as f
from tests.conftest import GraphQLClient

READ = """query($thing: ID!, $url: String!, $creator: ID!, $site: ID!) {
  thing(id: $thing) { id hidden }
  node(id: $thing) { id }
  thingByUrl(url: $url) { id }
  creator: node(id: $creator) { ... on Creator { things(first: 100) { nodes { id } } } }
  site(id: $site) { things(first: 100) { nodes { id } } } }"""


async def test_hidden_things_show_only_to_who_may_see_them(api_url: str, system_pool: asyncpg.Pool) -> None:
    async with system_pool.acquire() as conn:
        a, b = await f.make_tenant_world(conn), await f.make_tenant_world(conn)
        stranger = await f.person(conn, a.tenant_id, "stranger")
        async with conn.transaction():
            await set_scope(conn, Scope(a.tenant_id))
            hidden_url = f"https://{a.slug}.example/hidden"
            hidden = await f.thing(conn, a.tenant_id, a.creator_id, hidden_url)
            await conn.execute("update things set hidden = true, site_id = $2 where id = $1", hidden, a.site_public_id)
            await conn.execute("update things set site_id = $2 where id = $1", a.thing_id, a.site_public_id)
            # a.supporter clicked it (a button works for a hidden thing): it is in their history.
            await f.click(conn, a.tenant_id, a.supporter_id, hidden, "2026-01-15T12:00:00Z")
            tokens = {name: await issue_token(conn, tenant_id=a.tenant_id, account_id=pk, ttl=timedelta(hours=1))
                      for name, pk in (("owner", a.creator_id), ("admin", a.admin_id), ("clicker", a.supporter_id),
                                       ("stranger", stranger))}
    callers = {**tokens, "key": a.api_key, "other tenant's key": b.api_key, "nobody": None}
    sees = {"owner", "admin", "key", "clicker"}

    def read(token: str | None, thing: int, url: str) -> dict[str, Any]:
        return GraphQLClient(api_url, token=token)(READ, {
            "thing": to_global("Thing", thing), "url": url, "creator": to_global("Creator", a.creator_id),
            "site": to_global("Site", a.site_public_id)})

    for name, token in callers.items():
        got = read(token, hidden, hidden_url)
        listed = [[n["id"] for n in got[root]["things"]["nodes"]] for root in ("creator", "site")]
        gid = to_global("Thing", hidden)
        if name in sees:
            assert got["thing"] == {"id": gid, "hidden": True}, name
            assert got["node"] == got["thingByUrl"] == {"id": gid}, name
            assert all(gid in ids for ids in listed), (name, listed)
        else:
            assert got["thing"] is None and got["node"] is None and got["thingByUrl"] is None, (name, got)
            assert all(gid not in ids for ids in listed), (name, listed)
        # The positive control: a thing not hidden shows to everyone, every way.
        shown = read(token, a.thing_id, f"https://{a.slug}.example/post")
        gid = to_global("Thing", a.thing_id)
        assert shown["thing"] == {"id": gid, "hidden": False} and shown["node"] == shown["thingByUrl"] == {"id": gid}
        assert gid in [n["id"] for n in shown["creator"]["things"]["nodes"]], name
        assert gid in [n["id"] for n in shown["site"]["things"]["nodes"]], name
