"""OpenTelemetry: off by default, spans for HTTP requests, GraphQL operations and worker
messages when on, and a clear warning when asked for without the packages."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from graph.http_observability import Observe
from merci import observability
from tests.conftest import ROOT, GraphQLClient, service_env, start_api

pytest.importorskip("opentelemetry.sdk", reason="the dev extra installs opentelemetry-sdk")
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert observability.configure_tracing("test", exporter=exporter)
    try:
        yield exporter
    finally:
        observability.shutdown_tracing()
    assert not observability.tracing_enabled()


async def test_http_request_and_graphql_operation_spans(spans: InMemorySpanExporter) -> None:
    from runtime.faces import build_schema

    schema = build_schema("api")

    async def endpoint(request: Request) -> JSONResponse:
        result = await schema.execute("query Probe { __typename }")
        return JSONResponse({"data": result.data})

    app = Starlette(routes=[Route("/probe/{x}", endpoint, methods=["POST"])], middleware=[Middleware(Observe)])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        r = await client.post("/probe/1", headers={"traceparent": TRACEPARENT, "x-request-id": "trace-req"})
    assert r.json()["data"] == {"__typename": "Query"} and r.headers["x-request-id"] == "trace-req"

    finished = {s.name: s for s in spans.get_finished_spans()}
    server, operation = finished["POST /probe/{x}"], finished["graphql query Probe"]
    assert server.kind is SpanKind.SERVER
    assert format(server.context.trace_id, "032x") == TRACE_ID  # continues the caller's trace
    assert server.attributes["http.route"] == "/probe/{x}" and server.attributes["http.response.status_code"] == 200
    assert operation.parent is not None and operation.parent.span_id == server.context.span_id
    assert operation.attributes["graphql.operation.type"] == "query"
    assert "query" not in operation.attributes  # documents may hold secrets: never recorded

    failing = await schema.execute("{ nope }")
    assert failing.errors
    failed = next(s for s in spans.get_finished_spans() if s.name == "graphql query anonymous")
    assert (failed.status.status_code, failed.status.description) == (StatusCode.ERROR, "GRAPHQL_VALIDATION_FAILED")


def test_worker_message_spans(spans: InMemorySpanExporter) -> None:
    middleware = observability.WorkerContext()
    broker: Any = None
    ok = dramatiq.Message(queue_name="clicks", actor_name="clicks.ingest", args=(), kwargs={}, options={})
    middleware.before_process_message(broker, ok)
    middleware.after_process_message(broker, ok, result=None)
    bad = dramatiq.Message(queue_name="money", actor_name="money.close_shard", args=(), kwargs={}, options={})
    middleware.before_process_message(broker, bad)
    middleware.after_process_message(broker, bad, exception=RuntimeError("boom"))
    first, second = spans.get_finished_spans()
    assert (first.name, first.kind, first.status.status_code) == ("clicks.ingest", SpanKind.CONSUMER, StatusCode.UNSET)
    assert first.attributes["messaging.message.id"] == ok.message_id
    assert (second.name, second.status.status_code) == ("money.close_shard", StatusCode.ERROR)
    assert second.events[0].name == "exception"


def test_off_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(var, raising=False)
    assert observability.configure_tracing("test") is False
    assert not observability.tracing_enabled()
    with observability.span("nothing") as current:
        assert current is None


def test_endpoint_without_packages_warns_and_stays_off() -> None:
    code = ("import sys; sys.modules['opentelemetry'] = None\n"
            "from merci import observability\n"
            "observability.configure_logging('test')\n"
            "print(observability.configure_tracing('test'))")
    env = service_env("postgresql://unused/x", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4317")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    warning = json.loads(out.stderr.strip().splitlines()[-1])
    assert warning["event"] == "tracing_unavailable" and warning["level"] == "warning"
    assert "merci[otel]" in warning["hint"]


def test_served_api_exports_spans(database_url: str, tmp_path: Path) -> None:
    """`merci serve` with the console exporter: spans of real requests, trace ids in the logs."""
    api, base = start_api(database_url, tmp_path, OTEL_TRACES_EXPORTER="console")
    try:
        r = GraphQLClient(base).http.post("/graphql", json={"query": "query Slug { tenant { slug } }"},
                                          headers={"traceparent": TRACEPARENT})
        assert r.json()["data"] == {"tenant": {"slug": "merci"}} and "errors" not in r.json()
    finally:
        api.stop()
    text = api.log.read_text()
    assert '"name": "POST /graphql"' in text and '"name": "graphql query Slug"' in text
    assert f'"trace_id": "0x{TRACE_ID}"' in text
