"""Each `merci serve` face answers its own routes and no other's: `api` the api subgraph
and its pages (embeds, login, submit, badges, oEmbed, OAuth), `directory` the directory
subgraph and /directory, `all` everything; each has /graphql, its probes and /metrics.
The routes come from the apps (tests/routes.py), so a new one is covered at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runtime import faces
from tests.conftest import start_api
from tests.routes import FACES, Served, pages, served

ENV = "test"  # what service_env gives the processes


@pytest.fixture(scope="module")
def servers(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp: Path = tmp_path_factory.mktemp("faces")
    started = []
    try:
        for face in FACES:
            started.append((face, *start_api(database_url, tmp, face=face)))
        yield {face: base for face, _, base in started}
    finally:
        for _, service, _ in started:
            service.stop()


def answers(base: str, route: Served) -> bool:
    """Whether the server has this route. Starlette's router answers a path it does not
    serve with a bare `404 Not Found`; a route of ours that finds nothing says more."""
    r = httpx.request(route.method, base + route.path, timeout=30, follow_redirects=False)
    return not (r.status_code == 404 and r.text == "Not Found")


def test_each_face_answers_its_own_routes_and_no_other(servers: dict[str, str]) -> None:
    api_pages, directory_pages = pages("api", ENV), pages("directory", ENV)
    assert {p.path for p in api_pages} >= {"/embed/button.js", "/submit/auto", "/oembed", "/oauth/token"}
    assert [p.path for p in directory_pages] == ["/directory"]
    wrong = []
    for face, own, foreign in (("api", api_pages, directory_pages), ("directory", directory_pages, api_pages)):
        wrong += [f"{face} does not answer {r.method} {r.path}" for r in own if not answers(servers[face], r)]
        wrong += [f"{face} answers the other face's {r.method} {r.path}" for r in foreign
                  if answers(servers[face], r)]
    # Every route of each face's app is answered: the shell (/graphql, probes, metrics) on each.
    for face in FACES:
        routes = served(face, ENV)
        assert {"/graphql", "/healthz", "/readyz", "/metrics"} <= {r.path for r in routes}
        wrong += [f"{face} does not answer {r.method} {r.path}" for r in routes if not answers(servers[face], r)]
        r = httpx.post(servers[face] + "/graphql", json={"query": "{ __typename }"}, timeout=30)
        assert r.json()["data"] == {"__typename": "Query"} and "errors" not in r.json()
    assert not wrong, "\n".join(wrong)

    # `all` is the two faces together, and what they share is the shell alone.
    def templates(face: faces.Face) -> set[str]:
        return {r.template for r in served(face, ENV)}

    assert templates("all") == templates("api") | templates("directory")
    assert templates("api") & templates("directory") == templates("all") - {r.template for r in pages("all", ENV)}
