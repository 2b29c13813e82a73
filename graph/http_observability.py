"""The HTTP side of observability: a request id on every request (the caller's
X-Request-Id, or a new one, returned in the response), one access-log line, HTTP
metrics, the server span when tracing is on, and `/metrics`, on a port of its own
outside development and test (MetricsPort)."""

from __future__ import annotations

import logging
import time

import asyncpg
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
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


class MetricsPort:
    """`/metrics` answers on the metrics port only (MERCI_METRICS_PORT, a second socket of
    the same server: `merci serve`), and that port answers nothing else; so the API's
    port, the one the Ingress, the gateway and partners reach, never shows the metrics.
    Without a metrics port, development and test serve `/metrics` on the API's port as
    before, and any other environment serves it nowhere. The port is the socket's the
    connection came in on (the ASGI scope's `server`), which no header can change."""

    def __init__(self, app: ASGIApp, *, port: int, anywhere: bool) -> None:
        self.app = app
        self.port = port  # 0: none
        self.anywhere = anywhere and not port  # /metrics on any port (development, test)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.anywhere:
            server = scope.get("server")
            on_metrics_port = bool(self.port) and server is not None and server[1] == self.port
            if (scope["path"] == "/metrics") != on_metrics_port:
                await PlainTextResponse("Not Found", status_code=404)(scope, receive, send)
                return
        await self.app(scope, receive, send)
