"""Rate limits at the HTTP edge: who the client is, the limits every /graphql request
counts against, and the answer to a refusal (merci.ratelimit decides; this says it).

A refusal is the request's, not a field's: HTTP 429, `Retry-After`, and a GraphQL body
with the error alone (no `data`), which the gateways relay as it is (gateway/policy.mjs:
`refusal`). Pages get the same status and header with a page to read.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Scope, Send

from graph.pages import choose_lang
from merci import i18n, metrics
from merci.accounts import Principal
from merci.ratelimit import Limiter, RateLimited


def client_ip(scope: Scope) -> str:
    """The client's address. Behind a trusted proxy (MERCI_TRUSTED_PROXIES) it is the one
    X-Forwarded-For names, rewritten into the scope by uvicorn's ProxyHeadersMiddleware,
    which graph.http puts first; otherwise the peer's own."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def count_request(limiter: Limiter | None, scope: Scope, principal: Principal) -> None:
    """Every /graphql request counts once per address, and per account or API key (and
    an API key's tenant); RateLimited past any of them."""
    if limiter is None:
        return
    hits: list[tuple[str, tuple[object, ...], str]] = [("request.ip", (client_ip(scope),), "requests")]
    if principal.api_key_id is not None:
        hits += [("request.key", (principal.api_key_id,), "requests"),
                 ("request.tenant", (principal.tenant_id,), "requests")]
    elif principal.account_id is not None:
        hits.append(("request.account", (principal.account_id,), "requests"))
    await limiter.hit_all(*hits)


async def count_click(limiter: Limiter | None, scope: Scope, account_id: int) -> None:
    """A click, from the API or a page: per supporter and per address."""
    if limiter is not None:
        await limiter.hit_all(("click.account", (account_id,), "clicks"), ("click.ip", (client_ip(scope),), "clicks"))


def graphql_error(limited: RateLimited, path: Sequence[str | int] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": limited.message, "extensions": dict(limited.extensions)}
    if path:
        error["path"] = list(path)
    return error


def graphql_refusal(limited: RateLimited) -> JSONResponse:
    metrics.GRAPHQL_ERRORS.labels(RateLimited.code).inc()
    return JSONResponse({"errors": [graphql_error(limited)]}, 429,
                        headers={"retry-after": str(limited.retry_after)})


async def send_graphql_refusal(send: Send, limited: RateLimited, extra: list[tuple[bytes, bytes]]) -> None:
    """The refusal, sent straight from ASGI (graph.fastpath), with the headers the
    authentication left for the answer."""
    response = graphql_refusal(limited)
    await send({"type": "http.response.start", "status": 429,
                "headers": [*response.raw_headers, *extra]})
    await send({"type": "http.response.body", "body": response.body})


def limited_result(data: dict[str, Any]) -> RateLimited | None:
    """The longest wait among a GraphQL result's RATE_LIMITED errors, if it has any."""
    waits = [int(e.get("extensions", {}).get("retryAfter", 1)) for e in data.get("errors") or ()
             if isinstance(e, dict) and (e.get("extensions") or {}).get("code") == RateLimited.code]
    return RateLimited(max(waits)) if waits else None


def page_refusal(request: Request, limited: RateLimited) -> Response:
    """A page's refusal: 429, Retry-After, and a sentence in the reader's language."""
    lang = choose_lang(request)
    words = i18n.translations(lang)
    title = html.escape(words.gettext("Too many requests"))
    text = html.escape(words.gettext("Too many attempts: please try again in %(seconds)s seconds.")
                       % {"seconds": i18n.format_number(limited.retry_after, lang)})
    body = (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title></head>'
            f"<body><main><h1>{title}</h1><p>{text}</p></main></body></html>")
    return HTMLResponse(body, 429, headers={
        "retry-after": str(limited.retry_after), "cache-control": "no-store",
        "content-security-policy": "default-src 'none'"})  # (framed: the button's iframe shows it too)


async def page_refused(request: Request, exc: Exception) -> Response:
    """Starlette's handler for RateLimited raised by any page (graph.http installs it)."""
    assert isinstance(exc, RateLimited)
    return page_refusal(request, exc)
