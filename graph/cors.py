"""CORS for /graphql: a page on another origin may call the API only when its origin is
in the allowlist (merci.cors: the web app's origins from MERCI_CORS_ORIGINS, and those
each tenant lists for its apps).

- A listed origin's preflight is answered (204) with the methods and headers the API
  takes, cached by the browser for MERCI_CORS_MAX_AGE seconds; its requests get
  `Access-Control-Allow-Origin: <origin>` and `Access-Control-Allow-Credentials: true`,
  errors (a 401 for a bad token) included, so the app can read them.
- Any other origin gets no CORS header at all (its preflight a 403): the browser refuses
  the call, with a bearer token or without. A token works from a server anywhere; in a
  browser, only the pages of a listed origin may hold one (docs/cors.md says why).
- Every answer on the path says `Vary: Origin`, so that no cache hands one origin's
  answer to another.

Which user's cookie a listed origin may send along is the authentication's decision
(graph.http.Auth, with `cookie_allowed` below). The embeds (button, login, submit) take no
part: they are Merci's own pages, guarded by Origin checks and CSRF tokens.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graph.http_observability import request_header
from merci.cors import Allowlist

METHODS = b"GET, POST"
HEADERS = (b"Authorization, Content-Type, X-Merci-Tenant, X-Request-Id, traceparent, tracestate,"
           b" apollographql-client-name, apollographql-client-version")
EXPOSED = b"X-Request-Id, WWW-Authenticate"  # (the latter: why a token was not taken, docs/api.md)
VARY = (b"vary", b"Origin")


class Cors:
    def __init__(self, app: ASGIApp, *, path: str, allowlist: Allowlist, max_age: int) -> None:
        self.app = app
        self.path = path
        self.allowlist = allowlist
        self.max_age = str(max_age).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        origin = request_header(scope, b"origin")
        if origin is None:  # not a cross-origin call from a browser
            await self.app(scope, receive, _adding(send, [VARY]))
            return
        listing = await self.allowlist.lookup(scope["app"].state.pool, origin)
        allowed = [] if listing is None else [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-credentials", b"true")]
        if scope["method"] == "OPTIONS" and request_header(scope, b"access-control-request-method") is not None:
            await _preflight(send, allowed and [*allowed, (b"access-control-allow-methods", METHODS),
                                                (b"access-control-allow-headers", HEADERS),
                                                (b"access-control-max-age", self.max_age)])
            return
        if allowed:
            allowed.append((b"access-control-expose-headers", EXPOSED))
        await self.app(scope, receive, _adding(send, [VARY, *allowed]))


def _adding(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *headers]
        await send(message)

    return sending


async def _preflight(send: Send, allowed: list[tuple[bytes, bytes]]) -> None:
    body = b"" if allowed else b"This origin may not call the API from a browser.\n"
    headers = [VARY, *allowed, (b"content-length", str(len(body)).encode())]
    if body:
        headers.append((b"content-type", b"text/plain; charset=utf-8"))
    await send({"type": "http.response.start", "status": 204 if allowed else 403, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def own_origins(scope: Scope, public_url: str) -> tuple[str, str]:
    """Merci's own origins for this request: the public one, and the one it was addressed to."""
    public = urlsplit(public_url)
    return f"{public.scheme}://{public.netloc}", f"{scope['scheme']}://{request_header(scope, b'host') or ''}"


async def cookie_allowed(scope: Scope, public_url: str, allowlist: Allowlist, tenant_id: int) -> bool:
    """Whether this request may act with the session cookie of a user of `tenant_id`: when
    it comes from no browser page (no Origin), from Merci's own pages, from the web app's
    origins, or from an origin the user's own tenant listed. A page of an origin another
    tenant listed, or of an unlisted one on the same site (where SameSite lets the cookie
    through), acts for nobody with it."""
    origin = request_header(scope, b"origin")
    if origin is None or origin in own_origins(scope, public_url):
        return True
    listing = await allowlist.lookup(scope["app"].state.pool, origin)
    return listing is not None and listing.takes_cookie_of(tenant_id)
