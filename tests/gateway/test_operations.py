"""The production path answers as the lab path does: a frontend's whole operation set
(tests/gateway/frontend.py: operations/*.graphql and the web app's
web/operations/*.graphql), replayed through Hive Gateway and
through Apollo Gateway over separately started `merci serve api` and `merci serve
directory`, gets the answers `merci serve all` gives: statuses, data, error codes, the
session cookie, CORS headers. Each deployment has a fresh database of its own, so the
replays are alike step by step. Every root field of schema.graphql is in the set."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from merci.db import migrate
from runtime.faces import build_schema
from tests.conftest import Service, create_database, drop_database, free_port, service_env, wait_http
from tests.gateway.frontend import SCENARIO, Run, operations, root_fields, transcript
from tests.gateway.test_federation import GATEWAY, GATEWAYS, node_ready

# One public URL for every process, as behind the ingress (buttons' URLs, the cookie's Secure).
PUBLIC = {"MERCI_PUBLIC_URL": "https://merci.test"}


class Deployment:
    """Processes on a database of their own, started together, stopped by PID."""

    def __init__(self, server_url: str, tmp: Path, name: str) -> None:
        self.name, self.tmp = name, tmp
        self.dsn = create_database(server_url, f"merci_ops_{name}")
        asyncio.run(migrate(self.dsn))
        self.services: list[tuple[Service, str]] = []
        self.url = ""  # its GraphQL endpoint
        # Behind a gateway: the same gateway in production, with the directory unreachable.
        self.production = ""

    def serve(self, face: str) -> str:
        port = free_port()
        svc = Service([sys.executable, "-m", "runtime.cli", "serve", face, "--port", str(port), "--quiet"],
                      service_env(self.dsn, **PUBLIC), self.tmp / f"{self.name}-{face}.log")
        self.services.append((svc, f"http://127.0.0.1:{port}/healthz"))
        return f"http://127.0.0.1:{port}"

    def gateway(self, kind: str, api: str, directory: str, **env: str) -> str:
        port = free_port()
        argv, path = GATEWAYS[kind]
        svc = Service(argv, service_env(self.dsn, PORT=str(port), HOST="127.0.0.1", MERCI_API_URL=f"{api}/graphql",
                                        MERCI_DIRECTORY_URL=f"{directory}/graphql", **env),
                      self.tmp / f"{self.name}-{kind}-{port}.log", cwd=GATEWAY)
        self.services.append((svc, f"http://127.0.0.1:{port}{path}?query=%7B__typename%7D"))
        return f"http://127.0.0.1:{port}{path}"

    def wait(self) -> None:
        for svc, probe in self.services:
            wait_http(probe, svc, timeout=60)

    def stop(self, server_url: str) -> None:
        for svc, _ in self.services:  # all at once, then each waited for
            if svc.proc.poll() is None:
                svc.proc.terminate()
        for svc, _ in self.services:
            svc.stop()
        drop_database(server_url, self.dsn)


@pytest.fixture(scope="module")
def deployments(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Deployment]]:
    node_ready()
    tmp = tmp_path_factory.mktemp("operations")
    made: dict[str, Deployment] = {}
    try:
        made["single"] = Deployment(server_url, tmp, "single")
        made["single"].url = made["single"].serve("all") + "/graphql"
        for kind in sorted(GATEWAYS):
            d = made[kind] = Deployment(server_url, tmp, kind)
            api, directory = d.serve("api"), d.serve("directory")
            d.url = d.gateway(kind, api, directory)
            d.production = d.gateway(kind, api, f"http://127.0.0.1:{free_port()}", MERCI_ENV="production")
        for d in made.values():
            d.wait()
        yield made
    finally:
        for d in made.values():
            d.stop(server_url)


def replay(d: Deployment) -> list[dict[str, Any]]:
    return list(transcript(SCENARIO, Run(d.url, d.dsn).replay(SCENARIO)))


def test_every_root_field_is_in_the_operation_set() -> None:
    """A new query or mutation needs its operation here, or this fails."""
    schema = build_schema("all")._schema
    wanted = {("query", f) for f in schema.query_type.fields} | {("mutation", f) for f in schema.mutation_type.fields}  # type: ignore[union-attr]
    docs = operations()
    used = {step.operation for step in SCENARIO}
    assert sorted(set(docs) - used) == [], "operation files the scenario never sends"
    covered = set().union(*(root_fields(docs[name]) for name in used if name in docs))
    assert sorted(wanted - covered) == []
    # The check sees what is missing (the schema, not the documents, decides).
    assert ("mutation", "subscribe") in wanted and ("query", "me") in covered


def test_the_gateways_answer_as_one_process(deployments: dict[str, Deployment]) -> None:
    single = replay(deployments["single"])
    # The replay really exercised the API (a scenario failing everywhere alike would compare equal).
    by_step = {t["step"]: t for t in single}
    assert by_step["1 LogIn by anon"]["set-cookie"] == [
        "merci_session=<cookie#1>; HttpOnly; Max-Age=2592000; Path=/; SameSite=lax; Secure"]
    assert by_step["3 Viewer by root-cookie"]["data"]["me"]["isPlatformAdmin"] is True
    subscribed = next(t for t in single if t["step"].endswith("Subscribe by dave"))["data"]["subscribe"]
    assert subscribed["userErrors"] == [] and subscribed["subscription"]["status"] == "ACTIVE"
    subscriptions = next(t for t in single if t["step"].endswith("MySubscriptions by dave"))
    assert subscriptions["data"]["me"]["subscriptions"]["totalCount"] == 1
    bad = next(t for t in single if t["step"].endswith("Viewer by bad"))  # anonymous, and told why
    assert (bad["status"], bad["codes"]) == (200, ["UNAUTHENTICATED"]) and "invalid_token" in bad["www-authenticate"]
    failures = []
    for kind in sorted(GATEWAYS):
        through = replay(deployments[kind])
        for step, one, gw in zip(SCENARIO, single, through, strict=True):
            if step.single_process_only:
                assert one["codes"] == [] and one["data"], one
                unknown = gw["codes"] and set(gw["codes"]) == {"GRAPHQL_VALIDATION_FAILED"}
                gw_ok = gw["status"] == 200 and unknown and gw["data"] is None
                if not gw_ok:
                    failures.append(f"{kind}: {gw['step']}: the gateway serves federation's own field: {gw}")
                continue
            if one != gw:
                failures.append(f"{kind}: {one['step']}\n  one process: {json.dumps(one, sort_keys=True)}"
                                f"\n  {kind:>11}: {json.dumps(gw, sort_keys=True)}")
    assert not failures, "\n".join(failures)


INTROSPECTION = "{ __schema { queryType { name } } }"


def test_introspection_is_off_in_production_through_the_gateways_too(deployments: dict[str, Deployment]) -> None:
    direct = asyncio.run(build_schema("all", production=True).execute(INTROSPECTION))
    assert direct.errors and direct.data is None
    codes = [e.extensions["code"] for e in direct.errors]  # type: ignore[index]
    assert set(codes) == {"GRAPHQL_VALIDATION_FAILED"}
    for kind in sorted(GATEWAYS):
        body = httpx.post(deployments[kind].production, json={"query": INTROSPECTION}).json()
        assert body.get("data") is None and [e["extensions"]["code"] for e in body["errors"]] == codes, (kind, body)
        # …while it still answers, and introspection is on outside production.
        assert httpx.post(deployments[kind].production, json={"query": "{ defaultBudget { amount } }"}).json() == {
            "data": {"defaultBudget": {"amount": 500}}}
        assert httpx.post(deployments[kind].url, json={"query": INTROSPECTION}).json() == {
            "data": {"__schema": {"queryType": {"name": "Query"}}}}


def test_gateway_limits_are_graph_limits() -> None:
    """gateway/policy.mjs holds graph/limits.py's numbers."""
    from graph import limits

    out = subprocess.run(["node", "--input-type=module", "-e",
                          "import * as p from './policy.mjs'; console.log(JSON.stringify({depth: p.MAX_DEPTH,"
                          " total: p.MAX_TOTAL_DEPTH, tokens: p.MAX_TOKENS, aliases: p.MAX_ALIASES,"
                          " nul: p.NUL_MESSAGE}))"], cwd=GATEWAY, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"depth": limits.MAX_DEPTH, "total": limits.MAX_TOTAL_DEPTH,
                                      "tokens": limits.MAX_TOKENS, "aliases": limits.MAX_ALIASES,
                                      "nul": limits.NUL_MESSAGE}


def test_a_subgraph_down_is_masked(deployments: dict[str, Deployment]) -> None:
    """An unreachable subgraph is an unexpected error, masked as the process masks its own:
    no internal URL, no stack trace."""
    for kind in sorted(GATEWAYS):
        r = httpx.post(deployments[kind].production, json={"query": "{ sites(first: 1) { totalCount } }"})
        assert r.status_code == 200
        body = r.json()
        assert body["data"] is None and [(e["message"], e["extensions"]) for e in body["errors"]] == [
            ("Unexpected error.", {"code": "INTERNAL_SERVER_ERROR"})], (kind, r.text)


def test_the_production_gateway_is_told_it_is_production() -> None:
    from tests.k8s.test_manifests import containers, find, one, pod_template, render

    for overlay, env in (("production", "production"), ("staging", "staging")):
        objs = render(overlay)
        template = pod_template(one(objs, "Deployment", "merci-gateway"))
        assert template is not None
        gateway = next(c for c in containers(template["spec"]) if c["name"] == "gateway")
        ref = next(e for e in gateway["env"] if e["name"] == "MERCI_ENV")["valueFrom"]["configMapKeyRef"]
        assert find(objs, "ConfigMap", ref["name"])[0]["data"][ref["key"]] == env, overlay
