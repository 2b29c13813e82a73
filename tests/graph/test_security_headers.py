"""Every answer of every face carries the shell's security headers (graph.security):
each route of `merci serve all|api|directory` (tests/routes.py reads them from the apps,
so a new page is walked at once) is requested as a browser would, and its answer checked
whatever its status: nosniff, a Referrer-Policy, HSTS when the public URL is https, a
Content-Security-Policy (scripts from Merci only on pages), and framing refused except
for the button, which partner sites embed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest

from merci.config import Settings
from runtime import faces
from tests.routes import FACES, served

FRAMEABLE = "/embed/button"


Client = httpx.AsyncClient


async def client_of(settings: Settings, face: faces.Face, public_url: str) -> AsyncIterator[Client]:
    app = faces.app(replace(settings, env="test", public_url=public_url), face)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=public_url) as client:
        yield client


@pytest.fixture(scope="module", params=FACES)
async def face(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[tuple[str, Client]]:
    async for client in client_of(settings, request.param, "https://merci.test"):
        yield request.param, client


def problems(path: str, r: object, *, https: bool = True) -> list[str]:
    headers = r.headers  # type: ignore[attr-defined]
    found = []
    if headers.get("x-content-type-options") != "nosniff":
        found.append("no X-Content-Type-Options: nosniff")
    if headers.get("referrer-policy") != "strict-origin-when-cross-origin":
        found.append(f"Referrer-Policy {headers.get('referrer-policy')!r}")
    if https and not headers.get("strict-transport-security", "").startswith("max-age="):
        found.append("no Strict-Transport-Security")
    if not https and "strict-transport-security" in headers:
        found.append("HSTS on a plain-http deployment")
    csp = headers.get("content-security-policy", "")
    if "default-src 'none'" not in csp:
        found.append(f"Content-Security-Policy {csp!r}")
    html = headers.get("content-type", "").startswith("text/html")
    if html:
        scripts = next((d for d in csp.split(";") if d.strip().startswith("script-src")), "")
        if "'self'" not in scripts or "unsafe" in scripts or "*" in scripts:
            found.append(f"a page's scripts: {scripts!r}")
    if path.startswith(FRAMEABLE):
        if "x-frame-options" in headers or (html and "frame-ancestors *" not in csp):
            found.append("the button must stay frameable by partner sites")
    else:
        if headers.get("x-frame-options") != "DENY":
            found.append(f"X-Frame-Options {headers.get('x-frame-options')!r}")
        if html and "frame-ancestors 'none'" not in csp:
            found.append(f"a page that may be framed: {csp!r}")
    return found


async def test_every_route_of_every_face(face: tuple[str, Client]) -> None:
    name, client = face
    failures: dict[str, list[str]] = {}
    pages = 0
    for route in served(name, env="test"):  # GraphiQL's files too (on in test)
        r = await client.request(route.method, route.path, headers={"accept": "text/html,*/*;q=0.8"},
                                 follow_redirects=False)
        pages += r.headers.get("content-type", "").startswith("text/html")
        if found := problems(route.path, r):
            failures[f"{route.method} {route.path} ({r.status_code})"] = found
    missing = await client.get("/no-such-page")
    if found := problems("/no-such-page", missing):
        failures["GET /no-such-page (404)"] = found
    assert not failures, failures
    assert pages >= {"all": 5, "api": 4, "directory": 2}[name]  # GraphiQL, the directory, the embeds' pages


async def test_the_pages_and_their_policies(face: tuple[str, Client]) -> None:
    name, client = face
    ide = await client.get("/graphql", headers={"accept": "text/html"})
    assert ide.status_code == 200 and "graphiql" in ide.text
    assert "'sha256-" in ide.headers["content-security-policy"]  # its one inline script, by hash
    if name != "api":
        page = await client.get("/directory")
        assert page.status_code == 200 and page.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    if name != "directory":
        button = await client.get("/embed/button", params={"url": "https://example.com/post"})
        assert button.headers["content-type"].startswith("text/html")
        assert "frame-ancestors *" in button.headers["content-security-policy"]
        assert "x-frame-options" not in button.headers
        login = await client.get("/embed/login")
        assert login.headers["x-frame-options"] == "DENY"


async def test_no_hsts_over_plain_http(settings: Settings) -> None:
    async for client in client_of(settings, "directory", "http://127.0.0.1:8000"):
        r = await client.get("/directory")
        assert problems("/directory", r, https=False) == []
