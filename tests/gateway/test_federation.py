"""Federation for real: the api and directory subgraphs as two `merci serve` processes
behind each gateway (Hive Gateway, and Apollo Gateway in serve.mjs), queries that cross both, the caller's
identity forwarded to each, and composition that fails on a drifted supergraph."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from merci.ids import to_global
from tests.conftest import ROOT, GraphQLClient, Service, free_port, need, service_env, sign_up, start_api
from tests.directory.helpers import listed_site, new_tenant, person

GATEWAY = ROOT / "gateway"


def node_ready() -> None:
    need(shutil.which("node") is not None, "node is not installed")
    need((GATEWAY / "node_modules" / "@apollo" / "gateway").is_dir(), "run `npm ci` in gateway/")
    need((GATEWAY / "node_modules" / ".bin" / "hive-gateway").exists(), "run `npm ci` in gateway/")


# Both gateways serve the committed supergraph: Hive Gateway in production (k8s, the
# image), Apollo Gateway (serve.mjs) as a second, independent implementation.
GATEWAYS = {
    "hive": ([str(GATEWAY / "node_modules" / ".bin" / "hive-gateway"), "supergraph", "--host", "127.0.0.1"],
             "/graphql"),
    "apollo": (["node", str(GATEWAY / "serve.mjs")], ""),
}


@pytest.fixture(scope="module", params=sorted(GATEWAYS))
def federation(request: pytest.FixtureRequest, database_url: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    node_ready()
    tmp = tmp_path_factory.mktemp("federation")
    api, api_url = start_api(database_url, tmp, face="api")
    directory, directory_url = start_api(database_url, tmp, face="directory")
    port = free_port()
    env = service_env(database_url, PORT=str(port), HOST="127.0.0.1", MERCI_API_URL=f"{api_url}/graphql",
                      MERCI_DIRECTORY_URL=f"{directory_url}/graphql")
    argv, path = GATEWAYS[request.param]
    gateway = Service(argv, env, tmp / f"gateway-{request.param}.log", cwd=GATEWAY)
    url = f"http://127.0.0.1:{port}{path}"
    try:
        wait_up(url, gateway)
        yield {"gateway": url, "api": api_url, "directory": directory_url}
    finally:
        gateway.stop()
        directory.stop()
        api.stop()


class Gateway(GraphQLClient):
    def __init__(self, url: str, token: str | None = None) -> None:
        super().__init__(url, token)
        self.endpoint = url

    def raw(self, query: str, variables: dict[str, Any] | None = None) -> httpx.Response:
        return self.http.post(self.endpoint, json={"query": query, "variables": variables or {}})


@pytest.fixture(scope="module")
async def world(system_pool: asyncpg.Pool) -> dict[str, Any]:
    async with system_pool.acquire() as conn:
        tid, slug = await new_tenant(conn)
        owner = await person(conn, tid, "creator")
        handle = await conn.fetchval("select handle from accounts where id = $1", owner)
        sites = [await listed_site(conn, tid, owner, title=f"Federated zither {i}", tags=["zither"])
                 for i in range(3)]
        period = await conn.fetchval("select date_trunc('month', now() at time zone 'UTC')::date")
        for i, site in enumerate(sites):
            # A page of the site: its owner's by proof (migration 0015), and it counts for the site.
            thing = await conn.fetchval(
                "insert into things (tenant_id, url, title) select $1, s.url || 'post', $3 from sites s"
                " where s.id = $2 returning id", tid, site, f"Zither post {i}")
            await conn.execute("insert into thing_stats (thing_id, period, clicks) values ($1, $2, $3)",
                               thing, period, 10 * (i + 1))
    return {"tenant": slug, "handle": handle, "sites": sites}


SEARCH = """query($tenant: String) { searchSites(query: "zither", tenant: $tenant, sort: NEWEST) {
  totalCount
  nodes { title clicksThisMonth owner { handle } things { nodes { title } } } } }"""


def test_search_crosses_into_the_api_subgraph(federation: dict[str, str], world: dict[str, Any]) -> None:
    gw = Gateway(federation["gateway"])
    result = gw(SEARCH, {"tenant": world["tenant"]})["searchSites"]
    assert result["totalCount"] == 3
    assert [(n["title"], n["clicksThisMonth"], n["owner"]["handle"], [t["title"] for t in n["things"]["nodes"]])
            for n in result["nodes"]] == [
        ("Federated zither 2", 30, world["handle"], ["Zither post 2"]),
        ("Federated zither 1", 20, world["handle"], ["Zither post 1"]),
        ("Federated zither 0", 10, world["handle"], ["Zither post 0"]),
    ]


def test_creator_crosses_into_the_directory_subgraph(federation: dict[str, str], world: dict[str, Any]) -> None:
    gw = Gateway(federation["gateway"])
    creator = gw("""query($h: String!) { creator(handle: $h) { handle
        things(first: 10) { nodes { title } }
        sites(first: 10) { nodes { title clicksThisMonth owner { displayName } } } } }""",
                 {"h": world["handle"]})["creator"]
    assert creator["handle"] == world["handle"]
    assert sorted(t["title"] for t in creator["things"]["nodes"]) == ["Zither post 0", "Zither post 1", "Zither post 2"]
    assert sorted((s["title"], s["clicksThisMonth"]) for s in creator["sites"]["nodes"]) == [
        ("Federated zither 0", 10), ("Federated zither 1", 20), ("Federated zither 2", 30)]
    # node(id) is the api's; the directory fills in the Site's own fields.
    site = gw("""query($id: ID!) { node(id: $id) { id ... on Site { title clicksThisMonth } } }""",
              {"id": to_global("Site", world["sites"][0])})["node"]
    assert site == {"id": to_global("Site", world["sites"][0]), "title": "Federated zither 0", "clicksThisMonth": 10}


def test_authorization_reaches_every_subgraph(federation: dict[str, str]) -> None:
    me = sign_up(GraphQLClient(federation["api"]))
    mine = Gateway(federation["gateway"], me["token"])
    added = mine("""mutation { addSite(input: {url: "https://unlisted-zither.example"}) {
        site { id listed } userErrors { code } } }""")["addSite"]
    assert added["userErrors"] == [] and added["site"]["listed"] is False
    query = """{ me { handle creator { sites { nodes { id listed verification { status } } } } } }"""
    # api resolves `me` from the token; the directory sees the same token, so the
    # unlisted site and its verification show to its owner…
    sites = mine(query)["me"]["creator"]["sites"]["nodes"]
    assert sites == [{"id": added["site"]["id"], "listed": False, "verification": {"status": "UNVERIFIED"}}]
    # …and to nobody else, through either subgraph.
    stranger = Gateway(federation["gateway"], sign_up(GraphQLClient(federation["api"]))["token"])
    creator = stranger("""query($h: String!) { creator(handle: $h) { sites { nodes { id } } } }""",
                       {"h": me["handle"]})["creator"]
    assert creator["sites"]["nodes"] == []
    assert stranger("""query($id: ID!) { site(id: $id) { id } }""", {"id": added["site"]["id"]})["site"] is None
    # A bad token is refused by the subgraphs, not let through as anonymous.
    bad = Gateway(federation["gateway"], "ms_1_not-a-token").raw("{ me { handle } }").json()
    assert bad.get("data") in (None, {"me": None}) and bad["errors"]


def test_subgraphs_answer_alone_too(federation: dict[str, str]) -> None:
    api = httpx.post(federation["api"] + "/graphql", json={"query": "{ _service { sdl } }"}).json()
    directory = httpx.post(federation["directory"] + "/graphql", json={"query": "{ _service { sdl } }"}).json()
    assert "clicksThisMonth" in api["data"]["_service"]["sdl"] and "searchSites" not in api["data"]["_service"]["sdl"]
    assert "searchSites" in directory["data"]["_service"]["sdl"]
    assert "clicksThisMonth" not in directory["data"]["_service"]["sdl"]


def test_supergraph_is_composed_from_the_code(tmp_path: Path) -> None:
    node_ready()
    # The subgraph SDLs in gateway/subgraphs are the code's (merci schema check covers them)…
    check = subprocess.run([sys.executable, "-m", "runtime.cli", "schema", "check"], cwd=ROOT, capture_output=True,
                           text=True, env={**os.environ})
    assert check.returncode == 0, check.stdout + check.stderr
    # …and composing them gives the committed supergraph.graphql.
    composed = subprocess.run(["node", "compose.mjs", "--check"], cwd=GATEWAY, capture_output=True, text=True)
    assert composed.returncode == 0, composed.stdout + composed.stderr
    # A drifted supergraph fails the check.
    copy = gateway_copy(tmp_path)
    drifted = (copy / "supergraph.graphql").read_text().replace("clicksThisMonth", "clicksThisWeek")
    (copy / "supergraph.graphql").write_text(drifted)
    stale = subprocess.run(["node", "compose.mjs", "--check"], cwd=copy, capture_output=True, text=True)
    assert stale.returncode == 1 and "drifted" in stale.stderr


def gateway_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "gateway"
    shutil.copytree(GATEWAY, copy, ignore=shutil.ignore_patterns("node_modules"))
    (copy / "node_modules").symlink_to(GATEWAY / "node_modules")
    return copy


def test_composition_refuses_a_type_named_after_a_root_operation_type(tmp_path: Path) -> None:
    """Composition takes an object type named Subscription (or Query, Mutation) as that
    root whatever the subgraph's `schema {}` says; the gateways then broke every field
    returning the supporter's subscriptions. compose.mjs refuses the name."""
    node_ready()
    copy = gateway_copy(tmp_path)
    api = copy / "subgraphs" / "api.graphql"
    api.write_text(re.sub(r"\bThingSubscription\b", "Subscription", api.read_text()))
    refused = subprocess.run(["node", "compose.mjs", "--check"], cwd=copy, capture_output=True, text=True)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "subgraph api: object type `Subscription` is named after the subscription root" in refused.stderr


def test_the_node_version_is_stated_and_kept() -> None:
    """gateway/package.json states the Node.js versions the gateway runs on, every package
    the lock installs allows all of them (it once held packages needing 22.15 under a
    stated `>=20`), this Node (CI's) is one, and so is the image's; `npm ci` refuses a
    mismatch (.npmrc)."""
    node_ready()
    ok = subprocess.run(["node", "engines.mjs"], cwd=GATEWAY, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # An older Node is refused, naming what needs more (the check can fail).
    old = subprocess.run(["node", "engines.mjs", "20.5.0"], cwd=GATEWAY, capture_output=True, text=True)
    assert old.returncode == 1 and "package.json: needs Node" in old.stderr, old.stdout + old.stderr
    image = re.search(r"^ARG NODE_IMAGE=node:(\d+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert image is not None
    newest = subprocess.run(["node", "engines.mjs", f"{image.group(1)}.999.0"], cwd=GATEWAY, capture_output=True,
                            text=True)
    assert newest.returncode == 0, newest.stderr
    assert "engine-strict=true" in (GATEWAY / ".npmrc").read_text().split()


def test_the_client_address_reaches_the_subgraphs(database_url: str, tmp_path: Path) -> None:
    """Each gateway appends the address that sent it a request to X-Forwarded-For, so that
    the subgraphs' limits per address count clients, not the gateway: with the gateway
    trusted (MERCI_TRUSTED_PROXIES), one client's failed logins past login.ip refuse that
    client (RATE_LIMITED, 429 and Retry-After through the gateway) and not the next one.
    Without it every client would be the gateway's one address."""
    node_ready()
    limits = {"MERCI_TRUSTED_PROXIES": "127.0.0.1", "MERCI_RATE_LIMIT_MULTIPLIER": "1",
              "MERCI_RATE_LIMITS": "login.ip=3/minute", "MERCI_RATE_LIMIT_URL": "memory://"}
    api, api_url = start_api(database_url, tmp_path, face="api", **limits)
    directory, directory_url = start_api(database_url, tmp_path, face="directory", **limits)
    started = []
    try:
        for name, (argv, path) in sorted(GATEWAYS.items()):
            port = free_port()
            env = service_env(database_url, PORT=str(port), HOST="127.0.0.1", MERCI_API_URL=f"{api_url}/graphql",
                              MERCI_DIRECTORY_URL=f"{directory_url}/graphql")
            started.append(Service(argv, env, tmp_path / f"gateway-{name}.log", cwd=GATEWAY))
            url = f"http://127.0.0.1:{port}{path}"
            wait_up(url, started[-1])
            login = {"query": "mutation($i: LogInInput!) { logIn(input: $i) { userErrors { code } } }",
                     "variables": {"i": {"email": f"nobody-{name}@example.org", "password": "wrong password"}}}

            def attempt(address: str) -> httpx.Response:
                return httpx.post(url, json=login, headers={"x-forwarded-for": address}, timeout=10)  # noqa: B023

            first = [attempt(f"198.51.100.{7 if name == 'hive' else 17}") for _ in range(3)]
            assert [r.json()["data"]["logIn"]["userErrors"] for r in first] == [[{"code": "INVALID_CREDENTIALS"}]] * 3
            refused = attempt(f"198.51.100.{7 if name == 'hive' else 17}")
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1, (name, refused.text)
            assert [e["extensions"]["code"] for e in refused.json()["errors"]] == ["RATE_LIMITED"]
            other = attempt(f"198.51.100.{8 if name == 'hive' else 18}")  # another client: its own count
            assert other.status_code == 200, (name, other.text)
            assert other.json()["data"]["logIn"]["userErrors"] == [{"code": "INVALID_CREDENTIALS"}]
    finally:
        for gateway in started:
            gateway.stop()
        directory.stop()
        api.stop()


def wait_up(url: str, gateway: Service) -> None:
    deadline = time.monotonic() + 30
    while True:
        if gateway.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"gateway did not start:\n{gateway.output()[-3000:]}")
        try:
            if httpx.post(url, json={"query": "{ __typename }"}, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
