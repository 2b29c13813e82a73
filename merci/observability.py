"""Logs and traces, configured once per process by whatever starts it (`merci serve`,
`merci worker`, the scheduler, the other commands).

Logs are JSON lines (structlog), one per event, on stderr. Standard-library loggers
(uvicorn, Dramatiq, asyncpg) go through the same processors, so every line carries the
same context: the request id, tenant and principal in the API, the message in a worker.
Secrets never reach a line: fields named like one are replaced, and tokens, API keys,
bearer credentials and URL passwords are masked wherever they appear in a value.

Traces are OpenTelemetry and off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (or
OTEL_TRACES_EXPORTER=console, for a look on a terminal). The packages are an optional
extra (`pip install 'merci[otel]'`), imported only when tracing is on.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any, TextIO

import dramatiq
import structlog
from dramatiq.broker import MessageProxy
from structlog.typing import EventDict

from merci import config
from merci.config import Telemetry

log = structlog.get_logger("merci.observability")

# ------------------------------------------------------------------ redaction

REDACTED = "[REDACTED]"
_SECRET_FIELD = re.compile(r"pass(w|phrase|$)|secret|token|authorization|cookie|api_?key|credential", re.I)
_IN_TEXT: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=\-]+", re.I), r"\1 " + REDACTED),
    # Session tokens and API keys: ms_<tenant>_<secret>, mk_<tenant>_<secret>.
    (re.compile(r"\b(m[sk]_\d{1,18}_)[A-Za-z0-9_\-]+"), r"\1" + REDACTED),
    # Webhook signing secrets (merci.webhooks.new_secret): whsec_<secret>.
    (re.compile(r"\b(whsec_)[A-Za-z0-9_\-]+"), r"\1" + REDACTED),
    # scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^/\s:@]*):[^@\s/]*@", re.I), r"\1:" + REDACTED + "@"),
    # password: "…", "secret"='…', token=… inside a message (a GraphQL literal, a repr, a query string)
    (re.compile(r"""((?:pass(?:word|wd)?|secret|token)["']?\s*[:=]\s*)"""
                r"""("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s"',)}&]+)""", re.I),
     lambda m: m[1] + (m[2][0] + REDACTED + m[2][0] if m[2][0] in "\"'" else REDACTED)),
]


def redact_text(text: str) -> str:
    for pattern, replacement in _IN_TEXT:
        text = pattern.sub(replacement, text)
    return text


def _secret_key(key: object) -> bool:
    # api_key_id, token_count…: ids and counts are not secrets
    return isinstance(key, str) and bool(_SECRET_FIELD.search(key)) and not key.endswith(("_id", "_count"))


def _redact_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if depth < 3 and isinstance(value, Mapping):
        return {k: REDACTED if _secret_key(k) else _redact_value(v, depth + 1) for k, v in value.items()}
    if depth < 3 and isinstance(value, list | tuple):
        return [_redact_value(v, depth + 1) for v in value]
    return value


_UNTOUCHED = frozenset({"exc_info", "stack_info", "_record", "_from_structlog", "level", "logger", "ts"})


def redact(logger: Any, method: str, event: EventDict) -> EventDict:
    """structlog processor: the last word before rendering, for every line."""
    for key, value in event.items():
        if key in _UNTOUCHED:
            continue
        if _secret_key(key):
            event[key] = REDACTED
        elif value is not None and not isinstance(value, int | float | bool):
            event[key] = _redact_value(value if isinstance(value, str | Mapping | list | tuple) else str(value))
    return event


# ------------------------------------------------------------------ logging

def _trace_ids(logger: Any, method: str, event: EventDict) -> EventDict:
    if _provider is not None:
        from opentelemetry import trace

        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            event.setdefault("trace_id", format(ctx.trace_id, "032x"))
            event.setdefault("span_id", format(ctx.span_id, "016x"))
    return event


def configure_logging(service: str, *, level: str | None = None, stream: TextIO | None = None,
                      telemetry: Telemetry | None = None) -> None:
    """JSON lines on stderr (MERCI_LOG_FORMAT=console for people), at MERCI_LOG_LEVEL
    (default INFO). Replaces the root logger's handlers: call it once, at start."""
    settings = telemetry or config.telemetry()
    level = (level or settings.log_level).upper()
    console = settings.log_format == "console"

    def add_service(logger: Any, method: str, event: EventDict) -> EventDict:
        event.setdefault("service", service)
        event.setdefault("pid", os.getpid())
        return event

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_principal,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        add_service,
        _trace_ids,
    ]
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    renderer: Any = structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,  # before redact: tracebacks are text to mask too
            redact,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("asyncio", "pika", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


# ------------------------------------------------------------------ request context

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")


def request_id(incoming: str | None) -> str:
    """The caller's X-Request-Id when it is a sane token (it ends up in logs), else a new one."""
    if incoming and _REQUEST_ID.fullmatch(incoming):
        return incoming
    return os.urandom(16).hex()  # as random as uuid4().hex, at a third of the cost


def bind(**values: Any) -> None:
    structlog.contextvars.bind_contextvars(**values)


def clear() -> None:
    structlog.contextvars.clear_contextvars()
    _PRINCIPAL.set(None)


# Who the current request acts for: one variable set once a request (three of structlog's
# context variables cost a click as much as its own log context), put on every line by
# `_add_principal`.
_PRINCIPAL: ContextVar[tuple[int, int | None, int | None] | None] = ContextVar("merci_principal", default=None)


def bind_principal(tenant_id: int, account_id: int | None, api_key_id: int | None) -> None:
    """Who the current request acts for, on every line it logs."""
    _PRINCIPAL.set((tenant_id, account_id, api_key_id))


def _add_principal(logger: Any, method: str, event: EventDict) -> EventDict:
    who = _PRINCIPAL.get()
    if who is not None:
        event.setdefault("tenant_id", who[0])
        event.setdefault("account_id", who[1])
        event.setdefault("api_key_id", who[2])
    return event


# ------------------------------------------------------------------ tracing

_provider: Any = None  # opentelemetry.sdk.trace.TracerProvider once tracing is on


def tracing_enabled() -> bool:
    return _provider is not None


def configure_tracing(service: str, *, exporter: Any = None, telemetry: Telemetry | None = None) -> bool:
    """Turn tracing on when configured; returns whether it is on.

    `exporter` (tests) forces it on with that span exporter, synchronously exported.
    """
    global _provider
    settings = telemetry or config.telemetry()
    kind = settings.traces_exporter
    if exporter is None and (kind == "none" or (not settings.otlp_endpoint and kind != "console")):
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

        processor: Any
        if exporter is not None:
            processor = SimpleSpanProcessor(exporter)
        elif kind == "console":
            processor = SimpleSpanProcessor(ConsoleSpanExporter())
        else:
            protocol = "http" if settings.otlp_protocol.startswith("http") else "grpc"
            otlp = importlib.import_module(f"opentelemetry.exporter.otlp.proto.{protocol}.trace_exporter")
            processor = BatchSpanProcessor(otlp.OTLPSpanExporter())  # endpoint, headers: from OTEL_* variables
    except ImportError as exc:
        log.warning("tracing_unavailable", reason=f"{exc}",
                    hint="OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry packages are missing:"
                         " install merci[otel]; tracing stays off")
        return False
    attributes = {} if settings.otel_service_name else {"service.name": f"merci-{service}"}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(processor)
    if exporter is None:
        trace.set_tracer_provider(provider)  # also for any library instrumentation
    _provider = provider
    log.info("tracing_on", exporter=type(exporter).__name__ if exporter is not None else kind)
    return True


def flush_tracing() -> None:
    """Export the spans still batched: a server about to exit (a signal skips atexit)."""
    if _provider is not None:
        _provider.force_flush()


def shutdown_tracing() -> None:
    """Flush spans still batched (a process about to exit)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


def extract_context(headers: Mapping[str, str]) -> Any:
    """The caller's trace context (W3C traceparent), when tracing is on."""
    if _provider is None:
        return None
    from opentelemetry.propagate import extract

    return extract(dict(headers))


def span(name: str, *, kind: str = "internal", context: Any = None,
         attributes: dict[str, Any] | None = None) -> AbstractContextManager[Any]:
    """A span around the block, or nothing at all when tracing is off (the usual case)."""
    if _provider is None:
        return _NO_SPAN  # per request on the hot path: not even a generator
    return _span(name, kind=kind, context=context, attributes=attributes)


_NO_SPAN = nullcontext(None)


@contextmanager
def _span(name: str, *, kind: str, context: Any, attributes: dict[str, Any] | None) -> Iterator[Any]:
    from opentelemetry.trace import SpanKind

    tracer = _provider.get_tracer("merci")
    with tracer.start_as_current_span(name, context=context, kind=SpanKind[kind.upper()],
                                      attributes=attributes or {}) as current:
        yield current


# ------------------------------------------------------------------ workers

class WorkerContext(dramatiq.Middleware):
    """Every line a worker logs while processing a message names the message; with
    tracing on, each message is a span."""

    def __init__(self) -> None:
        self.spans: dict[str, Any] = {}

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        clear()
        bind(message_id=message.message_id, actor=message.actor_name, queue=message.queue_name,
             retries=message.options.get("retries", 0))
        if _provider is not None:
            from opentelemetry import context as otel_context
            from opentelemetry import trace

            current = _provider.get_tracer("merci").start_span(
                message.actor_name, kind=trace.SpanKind.CONSUMER,
                attributes={"messaging.system": "dramatiq", "messaging.destination.name": message.queue_name,
                            "messaging.message.id": message.message_id})
            token = otel_context.attach(trace.set_span_in_context(current))
            self.spans[message.message_id] = (current, token)

    def after_process_message(self, broker: dramatiq.Broker, message: MessageProxy, *,
                              result: Any = None, exception: BaseException | None = None) -> None:
        held = self.spans.pop(message.message_id, None)
        if held is not None:
            from opentelemetry import context as otel_context
            from opentelemetry.trace import Status, StatusCode

            current, token = held
            if exception is not None:
                current.record_exception(exception)
                current.set_status(Status(StatusCode.ERROR, type(exception).__name__))
            current.end()
            otel_context.detach(token)
        clear()

    after_skip_message = after_process_message

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        shutdown_tracing()


def worker_metrics() -> dramatiq.Middleware:
    """Dramatiq's Prometheus middleware (multiprocess counters of every worker process),
    served on dramatiq_prom_port (9191) together with the gauges that need merci_system
    (merci.metrics.serve_worker_metrics). Its module creates a directory on import, so
    only workers import it."""
    from dramatiq.middleware.prometheus import Prometheus

    class WorkerMetrics(Prometheus):
        @property
        def forks(self) -> list[Any]:
            # Imported here, after process boot: prometheus_client must not be imported in
            # a worker before Dramatiq has set PROMETHEUS_MULTIPROC_DIR.
            from merci.metrics import serve_worker_metrics

            return [serve_worker_metrics]

    return WorkerMetrics()
