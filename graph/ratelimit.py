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
from merci.ratelimit import Hit, Limiter, RateLimited
from merci.throttle import Buckets, Status


def client_ip(scope: Scope) -> str:
    """The client's address. Behind a trusted proxy (MERCI_TRUSTED_PROXIES) it is the one
    X-Forwarded-For names, rewritten into the scope by uvicorn's ProxyHeadersMiddleware,
    which graph.http puts first; otherwise the peer's own."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


COUNTED = "requests_counted"  # in the ASGI scope's state: this request's limits are counted (graph.fastpath)
CLICK_COUNTED = "click_counted"  # … and its click's


def request_hits(scope: Scope, principal: Principal) -> list[Hit]:
    """The limits every /graphql request counts against: per address, and per account or
    API key (and an API key's tenant)."""
    hits: list[Hit] = [("request.ip", (client_ip(scope),), "requests")]
    if principal.api_key_id is not None:
        hits += [("request.key", (principal.api_key_id,), "requests"),
                 ("request.tenant", (principal.tenant_id,), "requests")]
    elif principal.account_id is not None:
        hits.append(("request.account", (principal.account_id,), "requests"))
    return hits


def click_hits(scope: Scope, account_id: int) -> list[Hit]:
    """A click's limits, from the API or a page: per supporter and per address."""
    return [("click.account", (account_id,), "clicks"), ("click.ip", (client_ip(scope),), "clicks")]


async def count_request(limiter: Limiter | None, scope: Scope, principal: Principal) -> None:
    """Every /graphql request counts once against `request_hits`; RateLimited past any of
    them. Not again for a request graph.fastpath counted already (and handed on)."""
    if limiter is None or scope.get("state", {}).get(COUNTED):
        return
    await limiter.hit_all(*request_hits(scope, principal))


async def count_click(limiter: Limiter | None, scope: Scope, account_id: int) -> None:
    """A click counts against `click_hits`, unless graph.fastpath counted it already."""
    if limiter is not None and not scope.get("state", {}).get(CLICK_COUNTED):
        await limiter.hit_all(*click_hits(scope, account_id))


async def admit(limiter: Limiter | None, buckets: Buckets | None, scope: Scope, principal: Principal,
                clicks: list[Hit], who: str, cost: int) -> Status | None:
    """For graph.fastpath: count a request's limits (`request_hits`, and `clicks`, its
    click's) and take its query cost from `who`'s bucket, all in one round trip to Redis
    (merci.redis_batch) where the limits and the buckets share it; the bucket's status
    (None: no buckets). RateLimited past a limit, nothing taken from the bucket. Marks the
    scope counted, so that neither the normal path (a bucket that says no: it words the
    refusal) nor the resolver counts them again."""
    state = scope.setdefault("state", {})
    hits = request_hits(scope, principal) + clicks
    status = None
    if limiter is not None and limiter.counters is not None and buckets is not None \
            and buckets.counters is limiter.counters:
        ops = limiter.ops(*hits)
        try:
            answers = await limiter.counters.run([*ops, buckets.op(who, cost)])
        except Exception as exc:  # storage down: limits fail open, no budget is kept
            answers = [exc] * (len(ops) + 1)
        state[COUNTED] = True
        state[CLICK_COUNTED] = bool(clicks)
        refused = limiter.refused(hits, answers[:-1])
        status = buckets.status(answers[-1])
        if refused:
            if status.taken:  # refused: it costs nothing
                await buckets.take(who, -cost)
            await limiter.refuse(refused)
        return status
    if limiter is not None:
        state[COUNTED] = True
        state[CLICK_COUNTED] = bool(clicks)
        await limiter.hit_all(*hits)
    return None if buckets is None else await buckets.take(who, cost)


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
