"""The Ingress sends each public path to a process that serves it.

Every route of every face's app (read from the apps, tests/routes.py: a route added to
a face is covered at once) is looked up in the rendered Ingress as Kubernetes matches
paths (Exact, or Prefix by whole path elements; the longest match wins, Exact before
Prefix), then followed to its Service, the Deployments behind it, their container and
its command: `/graphql` must reach the gateway, any other public route a `merci serve
<face>` whose app has that route for that method, on the port the Service targets; the
probes and /metrics must not be reachable at all; and every path the Ingress routes
must lead to something served. The tests at the bottom break the render and see the
check notice.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from graph import graphiql
from graph.http import INTERNAL_PATHS
from tests.k8s.test_manifests import OVERLAYS, Obj, config_data, find, matches, one, render, workloads
from tests.routes import FACES, Served, served

MERCI_IMAGE = "ghcr.io/merci/merci"
GATEWAY_IMAGE = "ghcr.io/merci/gateway"
GRAPHQL = "/graphql"
# GraphiQL's files (outside production) serve the IDE a `merci serve` process shows at its
# own /graphql; behind the Ingress /graphql is the gateway's, which has an IDE of its own.
IDE_FILES = graphiql.PATH + "/"


def path_match(rule: Obj, path: str) -> tuple[int, int] | None:
    """How well an Ingress path matches `path` (longer first, then Exact), or None."""
    declared, kind = rule["path"], rule["pathType"]
    if kind == "Exact":
        return (len(declared), 1) if path == declared else None
    assert kind == "Prefix", f"pathType {kind} is implementation-specific: say Exact or Prefix"
    elements = [e for e in declared.split("/") if e]
    if [e for e in path.split("/") if e][:len(elements)] == elements:
        return (len(declared.rstrip("/")), 0)
    return None


def route_of(objs: list[Obj], host: str, path: str) -> Obj | None:
    """The backend the Ingresses send https://host/path to, as a controller would choose."""
    best: tuple[tuple[int, int], Obj] | None = None
    for ingress in find(objs, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            if rule.get("host", host) != host:
                continue
            for candidate in rule["http"]["paths"]:
                score = path_match(candidate, path)
                if score is not None and (best is None or score > best[0]):
                    best = (score, candidate)
    return None if best is None else best[1]


@functools.cache
def _served(face: str, env: str) -> tuple[Served, ...]:
    return tuple(served(face, env))  # type: ignore[arg-type]


def serve_face(container: Obj) -> str | None:
    """The face a container runs (`merci serve [face]`), or None if it runs no server."""
    args = container.get("args", [])
    if not container["image"].startswith(MERCI_IMAGE) or not args or args[0] != "serve":
        return None
    return args[1] if len(args) > 1 and not args[1].startswith("-") else "all"


def backends(objs: list[Obj], rule: Obj) -> tuple[list[str], list[tuple[str, Obj, int]]]:
    """(problems, [(workload, container, port)]): the containers behind an Ingress path,
    with the container port its Service sends the traffic to."""
    name, port = rule["backend"]["service"]["name"], rule["backend"]["service"]["port"]
    services = find(objs, "Service", name)
    if not services:
        return [f"the Ingress sends {rule['path']} to Service {name}, which does not exist"], []
    svc = services[0]
    ports = [p for p in svc["spec"]["ports"] if p.get("name") == port.get("name") or p["port"] == port.get("number")]
    if not ports:
        return [f"Service {name} has no port {port}"], []
    target = ports[0].get("targetPort", ports[0]["port"])
    found, problems = [], []
    for obj, template in workloads(objs):
        if obj["kind"] != "Deployment" or not matches(svc["spec"]["selector"], template["metadata"]["labels"]):
            continue
        for c in template["spec"]["containers"]:
            numbers = [p["containerPort"] for p in c.get("ports", []) if target in (p.get("name"), p["containerPort"])]
            if numbers:
                found.append((obj["metadata"]["name"], c, numbers[0]))
    if not found:
        problems.append(f"Service {name} (behind {rule['path']}) leads to no Deployment's container port {target!r}")
    return problems, found


def listens_on(container: Obj) -> int | None:
    """The port the process listens on, from its command line or environment."""
    args = container.get("args", [])
    if "--port" in args:
        return int(args[args.index("--port") + 1])
    env = {v["name"]: v.get("value") for v in container.get("env", [])}
    return int(env["PORT"]) if env.get("PORT") else None


def check_ingress_routes(objs: list[Obj], overlay: str) -> list[str]:
    config = config_data(objs)
    env, host = config["MERCI_ENV"], urlsplit(config["MERCI_PUBLIC_URL"]).hostname or ""
    problems = []
    ingresses = find(objs, "Ingress")
    if not any(host in tls.get("hosts", []) for i in ingresses for tls in i["spec"].get("tls", [])):
        problems.append(f"no Ingress has a TLS certificate for {host}, the host of MERCI_PUBLIC_URL")
    routes = {(face, r) for face in FACES for r in _served(face, env)}
    assert {r.path for _, r in routes} >= {GRAPHQL, "/embed/button.js", "/directory", *INTERNAL_PATHS}
    used: set[str] = set()
    for face, route in sorted(routes, key=lambda fr: (fr[1].path, fr[0])):
        what = f"{route.method} {route.path} (`merci serve {face}`)"
        rule = route_of(objs, host, route.path)
        if route.template == IDE_FILES:
            continue
        if route.path in INTERNAL_PATHS:
            if rule is not None:
                problems.append(f"{what} is internal, but the Ingress sends it to {rule['backend']['service']['name']}")
            continue
        if rule is None:
            problems.append(f"{what} is not routed by the Ingress")
            continue
        used.add(rule["path"])
        trouble, containers = backends(objs, rule)
        problems += trouble
        for workload, container, port in containers:
            at = f"{workload}/{container['name']}"
            if listens_on(container) != port:
                problems.append(f"{at}: listens on {listens_on(container)}, its Service sends to {port}")
            if route.path == GRAPHQL:
                if not container["image"].startswith(GATEWAY_IMAGE):
                    problems.append(f"{what} goes to {at} ({container['image']}), not to the gateway")
                continue
            runs = serve_face(container)
            if runs is None:
                problems.append(f"{what} goes to {at}, which runs no `merci serve`")
            elif not any(r.answers(route.path, route.method) for r in _served(runs, env)):
                problems.append(f"{what} goes to {at}, which runs `merci serve {runs}`: it does not serve it")
    for ingress in ingresses:
        for rule in ingress["spec"]["rules"]:
            problems += [f"the Ingress routes {p['path']} ({rule.get('host')}) to "
                         f"{p['backend']['service']['name']}, which serves nothing there"
                         for p in rule["http"]["paths"] if p["path"] not in used]
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_route_goes_to_a_process_that_serves_it(overlay: str) -> None:
    problems = check_ingress_routes(render(overlay), overlay)
    assert not problems, "\n".join(problems)


def test_graphql_goes_to_the_gateway_and_pages_to_their_faces() -> None:
    objs = render("production")
    host = urlsplit(config_data(objs)["MERCI_PUBLIC_URL"]).hostname or ""
    routed = {path: (rule or {}).get("backend", {}).get("service", {}).get("name")
              for path in ("/graphql", "/embed/button.js", "/submit/auto", "/badge/url.svg", "/oembed",
                           "/oauth/token", "/embed/login", "/directory", "/metrics", "/healthz", "/", "/account",
                           "/nowhere")
              for rule in [route_of(objs, host, path)]}
    assert routed == {"/graphql": "merci-gateway", "/embed/button.js": "merci-api", "/submit/auto": "merci-api",
                      "/badge/url.svg": "merci-api", "/oembed": "merci-api", "/oauth/token": "merci-api",
                      "/embed/login": "merci-api", "/directory": "merci-directory", "/metrics": None,
                      # The web app's home page (Exact: the rest of the site is not routed to it).
                      "/healthz": None, "/": "merci-api", "/account": "merci-api", "/nowhere": None}


# ---- the check can fail: break the production render and see it notice


def _paths(objs: list[Obj]) -> list[Obj]:
    paths: list[Obj] = one(objs, "Ingress", "merci")["spec"]["rules"][0]["http"]["paths"]
    return paths


def _everything_to_the_gateway(objs: list[Obj]) -> None:  # the Ingress before issue 14
    _paths(objs)[:] = [{"path": "/", "pathType": "Prefix",
                        "backend": {"service": {"name": "merci-gateway", "port": {"name": "http"}}}}]


def _no_embeds(objs: list[Obj]) -> None:
    _paths(objs)[:] = [p for p in _paths(objs) if p["path"] != "/embed"]


def _directory_to_api(objs: list[Obj]) -> None:
    next(p for p in _paths(objs) if p["path"] == "/directory")["backend"]["service"]["name"] = "merci-api"


def _graphql_to_api(objs: list[Obj]) -> None:
    next(p for p in _paths(objs) if p["path"] == "/graphql")["backend"]["service"]["name"] = "merci-api"


def _directory_runs_api(objs: list[Obj]) -> None:
    container = one(objs, "Deployment", "merci-directory")["spec"]["template"]["spec"]["containers"][0]
    container["args"][1] = "api"


def _wrong_port(objs: list[Obj]) -> None:
    container = one(objs, "Deployment", "merci-api")["spec"]["template"]["spec"]["containers"][0]
    container["args"][container["args"].index("--port") + 1] = "8080"


def _metrics_public(objs: list[Obj]) -> None:
    _paths(objs).append({"path": "/metrics", "pathType": "Exact",
                         "backend": {"service": {"name": "merci-api", "port": {"name": "http"}}}})


def _dead_path(objs: list[Obj]) -> None:
    _paths(objs).append({"path": "/static", "pathType": "Prefix",
                         "backend": {"service": {"name": "merci-api", "port": {"name": "http"}}}})


BREAKAGES: list[tuple[Callable[[list[Obj]], None], str]] = [
    (_everything_to_the_gateway, "GET /embed/button.js (`merci serve api`) goes to merci-gateway/gateway"),
    (_no_embeds, "GET /embed/button.js (`merci serve api`) is not routed by the Ingress"),
    (_directory_to_api, "GET /directory (`merci serve directory`) goes to merci-api/api, which runs `merci serve api`"),
    (_graphql_to_api, "GET /graphql (`merci serve api`) goes to merci-api/api (ghcr.io/merci/merci"),
    (_directory_runs_api, "goes to merci-directory/directory, which runs `merci serve api`: it does not serve it"),
    (_wrong_port, "merci-api/api: listens on 8080, its Service sends to 8000"),
    (_metrics_public, "GET /metrics (`merci serve api`) is internal, but the Ingress sends it to merci-api"),
    (_dead_path, "the Ingress routes /static (merci.example.org) to merci-api, which serves nothing there"),
]


@pytest.mark.parametrize("breakage, expected", BREAKAGES, ids=[b.__name__.lstrip("_") for b, _ in BREAKAGES])
def test_the_check_catches_a_broken_ingress(breakage: Callable[[list[Obj]], None], expected: str) -> None:
    objs = render("production")
    breakage(objs)
    problems = check_ingress_routes(objs, "production")
    assert any(expected in p for p in problems), f"no problem mentions {expected!r}:\n" + "\n".join(problems)
