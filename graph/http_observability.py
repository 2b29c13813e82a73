"""The HTTP side of observability: a request id on every request (the caller's
X-Request-Id, or a new one, returned in the response), one access-log line, HTTP
metrics, the server span when tracing is on, and `/metrics`."""

from __future__ import annotations

import logging
import time

import asyncpg
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from merci import metrics, observability

log = structlog.get_logger("merci.http")
_access = logging.getLogger("merci.http")  # its level decides (merci serve --quiet: no access log)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
QUIET = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapes: debug lines only


def request_header(scope: Scope, name: bytes) -> str | None:
    """A request header's value (the first), straight from the ASGI scope: names there are
    lower-case bytes. Cheaper than building Starlette's Headers on every request."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return None


class Observe:
    """Outermost ASGI middleware of the HTTP app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = observability.request_id(request_header(scope, b"x-request-id"))
        observability.clear()  # nothing of another request's context
        observability.bind(request_id=rid)
        scope.setdefault("state", {})["request_id"] = rid
        method = scope["method"] if scope["method"] in METHODS else "OTHER"
        path = scope["path"]
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        context = observability.extract_context(Headers(scope=scope)) if observability.tracing_enabled() else None
        with observability.span(f"HTTP {method}", kind="server", context=context,
                                attributes={"http.request.method": method, "url.path": path}) as span:
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                seconds = time.perf_counter() - started
                metrics.child(metrics.HTTP_REQUESTS, route, method, str(status)).inc()
                metrics.child(metrics.HTTP_DURATION, route).observe(seconds)
                level = logging.DEBUG if path in QUIET else logging.INFO
                if _access.isEnabledFor(level):
                    log.log(level, "request", method=method, path=path, route=route, status=status,
                            duration_ms=round(seconds * 1000, 2))
                if span is not None:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                    span.set_attribute("http.response.status_code", status)


class MetricsEndpoint:
    """`/metrics`: this process's counters and histograms, then the database gauges."""

    def __init__(self, *, ttl: float) -> None:
        self.gauges = metrics.AppGauges(ttl=ttl)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.gauges)

    async def serve(self, request: Request) -> Response:
        state = request.app.state
        pool: asyncpg.Pool = state.pool
        await self.gauges.refresh(pool, getattr(state.queue, "broker", None))
        return Response(metrics.render(self.registry), media_type=CONTENT_TYPE_LATEST)
