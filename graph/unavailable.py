"""Outages answer clearly: when the database or the broker cannot be reached, or a request
runs past its deadline, the answer is UNAVAILABLE (HTTP 503 with Retry-After), never a
bare 500 and never a wait as long as the client's patience.

GraphQL's own resolvers turn an outage into an error with code UNAVAILABLE (graph.errors);
what fails outside GraphQL's execution (authentication's lookup, a page, a probe) reaches
`Outages`, the middleware below, which answers in the form the path expects: a GraphQL
error for /graphql, JSON for the probes, a short page in the reader's language elsewhere.
"""

from __future__ import annotations

import asyncio
import html
import json

import structlog
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graph.pages import choose_lang
from merci import i18n, metrics
from merci.errors import RETRY_AFTER_SECONDS, Unavailable, unavailable

log = structlog.get_logger("merci.http")
PROBES = frozenset({"/healthz", "/readyz", "/metrics"})


def counted(outage: Unavailable) -> Unavailable:
    """Count an UNAVAILABLE answer (merci_unavailable_total, by what was unreachable)."""
    metrics.child(metrics.UNAVAILABLE, outage.service).inc()
    return outage


def graphql_error(outage: Unavailable) -> dict[str, object]:
    return {"message": outage.message, "extensions": {"code": "UNAVAILABLE", "retryAfter": RETRY_AFTER_SECONDS}}


def headers(content_type: bytes, body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(RETRY_AFTER_SECONDS).encode()), (b"cache-control", b"no-store")]


def answer(scope: Scope, outage: Unavailable, graphql_path: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The 503's headers and body, in the form the path expects."""
    path = scope["path"]
    if path == graphql_path:
        metrics.child(metrics.GRAPHQL_ERRORS, "UNAVAILABLE").inc()
        body = json.dumps({"errors": [graphql_error(outage)]}).encode()
        return headers(b"application/json", body), body
    if path in PROBES:
        body = json.dumps({"status": "unavailable", "service": outage.service}).encode()
        return headers(b"application/json", body), body
    lang = choose_lang(Request(scope))
    words = i18n.translations(lang)
    title = html.escape(words.gettext("Temporarily unavailable"))
    text = html.escape(words.gettext("Merci cannot answer right now: please try again in %(seconds)s seconds.")
                       % {"seconds": i18n.format_number(RETRY_AFTER_SECONDS, lang)})
    body = (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title></head>'
            f"<body><main><h1>{title}</h1><p>{text}</p></main></body></html>").encode()
    return [*headers(b"text/html; charset=utf-8", body), (b"content-security-policy", b"default-src 'none'")], body


class Outages:
    """Answers 503 UNAVAILABLE for an outage raised anywhere below it, and for a request
    whose answer has not started within `deadline` seconds (0: none). Once an answer has
    started it can no longer be changed: the deadline stops applying then, and an outage
    after that is left to the server (the connection is cut, as for any failure)."""

    def __init__(self, app: ASGIApp, *, deadline: float, graphql_path: str = "/graphql") -> None:
        self.app = app
        self.deadline = deadline
        self.graphql_path = graphql_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if timer is not None:
                    timer.reschedule(None)  # streaming the answer is not waiting for it
            await send(message)

        timer: asyncio.Timeout | None = None
        try:
            if self.deadline > 0:
                async with asyncio.timeout(self.deadline) as timer:
                    await self.app(scope, receive, sending)
            else:
                await self.app(scope, receive, sending)
        except Exception as exc:
            outage = unavailable(exc)
            if isinstance(exc, TimeoutError) and timer is not None and timer.expired():
                outage = Unavailable("deadline", f"no answer within {self.deadline:g} s")
            if outage is None or started:
                raise
            log.warning("unavailable", service=outage.service, error=str(exc) or type(exc).__name__,
                        path=scope["path"])
            extra, body = answer(scope, counted(outage), self.graphql_path)
            await send({"type": "http.response.start", "status": 503,
                        "headers": [*extra, *scope.get("state", {}).get("response_headers", ())]})
            await send({"type": "http.response.body", "body": body})
