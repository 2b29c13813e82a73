"""Prometheus metrics.

Two places serve them, because two roles see different things:

- the API's `/metrics` (merci_app, which RLS keeps to public aggregates): HTTP and
  GraphQL traffic, errors by code, clicks accepted, and gauges read from the database
  and the broker (queue depth, clicks stored this month, month closes);
- each worker pod's port 9191 (merci_system): Dramatiq's own metrics, aggregated over
  its processes, and the gauges that need every tenant's rows (ledger imbalance,
  refused clicks).

Gauges read from the database are the same whichever replica serves them: aggregate
them with max(), not sum(). They are cached (MERCI_METRICS_CACHE_SECONDS, default 10;
the ledger's sum of entries, a full scan, MERCI_METRICS_LEDGER_SECONDS, default 300)
so that a scrape costs a few indexed queries at most.
"""

from __future__ import annotations

import asyncio
import functools
import math
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from merci import config
from merci.config import Settings
from merci.periods import months_before, period_of
from merci.queue import QUEUES


@functools.lru_cache(maxsize=4096)
def child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, looked up once: label sets are few, requests are many."""
    return metric.labels(*labels)


log = structlog.get_logger("merci.metrics")
disable_created_metrics()  # type: ignore[no-untyped-call]  # the *_created series double the output for nothing here

# ------------------------------------------------------------------ API, in-process

HTTP_REQUESTS = Counter("merci_http_requests", "HTTP requests answered, by route template, method and status.",
                        ["route", "method", "status"])
HTTP_DURATION = Histogram("merci_http_request_duration_seconds", "Time to answer an HTTP request, by route template.",
                          ["route"])
GRAPHQL_OPERATIONS = Counter("merci_graphql_operations", "GraphQL operations, by operation name and type.",
                             ["operation", "type"])
GRAPHQL_DURATION = Histogram("merci_graphql_operation_duration_seconds",
                             "Time to run a GraphQL operation (parse, validate, execute).", ["operation", "type"])
GRAPHQL_ROOT_FIELDS = Counter("merci_graphql_root_fields", "Root fields executed, by operation type and field.",
                              ["type", "field"])
GRAPHQL_FAST_PATH = Counter("merci_graphql_fast_path", "Mutations answered by a precompiled plan (graph.fastpath), "
                            "by root field.", ["field"])
GRAPHQL_ERRORS = Counter("merci_graphql_errors", "Errors in GraphQL responses, by extensions.code "
                         "(INTERNAL_SERVER_ERROR: masked unexpected errors).", ["code"])
UNAVAILABLE = Counter("merci_unavailable", "Answers UNAVAILABLE (HTTP 503 or a GraphQL error): the database or the "
                      "broker out of reach, or no answer within the request's deadline; by service.", ["service"])
USER_ERRORS = Counter("merci_user_errors", "userErrors returned by mutations, by mutation and code.",
                      ["mutation", "code"])
CLICKS_ACCEPTED = Counter("merci_clicks_accepted", "Clicks accepted by the API: answered PENDING once durably queued.")
CLICKS_FORGED = Counter("merci_clicks_forged", "Clicks a worker dropped: their batch was not signed by the API "
                        "(MERCI_SECRET_KEY differs between API and workers, or someone else queued them).")

# Operation names come from clients: past this many distinct ones (the process's
# settings.metrics_max_operations, set by `configure`), the rest count as "other".
_max_operation_names = 200
_operation_names: set[str] = set()


def configure(settings: Settings) -> None:
    """This process's metrics settings, once, by whatever assembles it."""
    global _max_operation_names
    _max_operation_names = settings.metrics_max_operations


def operation_label(name: str | None) -> str:
    if not name:
        return "anonymous"
    name = name[:64]
    if name not in _operation_names:
        if len(_operation_names) >= _max_operation_names:
            return "other"
        _operation_names.add(name)
    return name


def render(*registries: CollectorRegistry) -> bytes:
    """The exposition text of the process-wide registry, then of each one given."""
    return b"".join(generate_latest(r) for r in (REGISTRY, *registries))


# ------------------------------------------------------------------ API, from the database

QUEUE_STATES = ("ready", "delayed", "in_flight", "dead")
CLOSE_STATUSES = ("running", "done", "failed")

PG_QUEUE_SQL = """
select queue_name, case when state = 'rejected' then 'dead'
                        when state = 'consumed' then 'in_flight'
                        when queue_name like '%.DQ' or available_at > now() then 'delayed'
                        else 'ready' end as state, count(*)::bigint as n
  from dramatiq.queue group by 1, 2
"""

CLOSES_SQL = """
select m.period, m.status, m.shards,
       extract(epoch from coalesce(m.finished_at, now()) - m.started_at)::float8 as seconds,
       count(s.shard)::int as done, coalesce(sum(s.supporters), 0)::bigint as supporters,
       coalesce(sum(s.charged), 0)::bigint as charged
  from month_closes m left join month_close_shards s on s.period = m.period
 group by m.period order by m.period desc limit 3
"""


def _queue_depths(broker: Any) -> dict[tuple[str, str], int]:
    """(queue, state) -> messages, from Redis or RabbitMQ (blocking: run in a thread)."""
    kind = type(broker).__name__
    depths: dict[tuple[str, str], int] = {}
    if kind == "RedisBroker":
        pipe = broker.client.pipeline(transaction=False)
        for q in QUEUES:
            pipe.llen(f"{broker.namespace}:{q}")
            pipe.llen(f"{broker.namespace}:{q}.DQ")
            pipe.zcard(f"{broker.namespace}:{q}.XQ")
        values = pipe.execute()
        for i, q in enumerate(QUEUES):
            ready, delayed, dead = values[3 * i: 3 * i + 3]
            depths.update({(q, "ready"): ready, (q, "delayed"): delayed, (q, "dead"): dead})
    elif kind == "RabbitmqBroker":
        for q in QUEUES:
            ready, delayed, dead = broker.get_queue_message_counts(q)
            depths.update({(q, "ready"): ready, (q, "delayed"): delayed, (q, "dead"): dead})
    return depths


class AppGauges(Collector):
    """The API's gauges from PostgreSQL and the broker, as merci_app sees them, cached."""

    def __init__(self, *, ttl: float) -> None:
        self.ttl = ttl
        self.families: list[Metric] = []
        self.fetched = -math.inf
        self.up = 0.0
        self.lock: asyncio.Lock | None = None

    async def refresh(self, pool: asyncpg.Pool, broker: Any = None) -> None:
        if time.monotonic() - self.fetched < self.ttl:
            return
        self.lock = self.lock or asyncio.Lock()
        async with self.lock:  # one refresh at a time; concurrent scrapes share it
            if time.monotonic() - self.fetched < self.ttl:
                return
            try:
                self.families = await self.read(pool, broker)
                self.up = 1.0
            except Exception as exc:  # a scrape must not fail because the database is away
                self.up = 0.0
                log.warning("metrics_refresh_failed", error=f"{type(exc).__name__}: {exc}")
            self.fetched = time.monotonic()

    async def read(self, pool: asyncpg.Pool, broker: Any) -> list[Metric]:
        current = period_of(datetime.now(UTC))
        previous = months_before(current, 1)
        in_db = broker is None or type(broker).__name__ == "PostgresBroker"
        async with pool.acquire(timeout=5) as conn:
            stored = await conn.fetchval(
                "select coalesce(sum(clicks), 0)::bigint from thing_stats where period = $1", current)
            closes = await conn.fetch(CLOSES_SQL)
            previous_done = await conn.fetchval(
                "select coalesce((select status = 'done' from month_closes where period = $1),"
                " not exists (select 1 from thing_stats where period = $1))", previous)
            rows = await conn.fetch(PG_QUEUE_SQL) if in_db else []
        depths: dict[tuple[str, str], int] = {}
        for r in rows:
            name = r["queue_name"].removesuffix(".DQ").removesuffix(".XQ")
            depths[name, r["state"]] = depths.get((name, r["state"]), 0) + int(r["n"])
        if not in_db:
            depths = await asyncio.to_thread(_queue_depths, broker)

        queue = GaugeMetricFamily("merci_queue_messages", "Messages in the broker, by queue and state "
                                  "(ready, delayed, in_flight: claimed by a worker, dead: dead-lettered).",
                                  labels=["queue", "state"])
        for q in sorted({*QUEUES, *(k[0] for k in depths)}):
            for state in QUEUE_STATES:
                if (q, state) in depths or state != "in_flight" or in_db:
                    queue.add_metric([q, state], depths.get((q, state), 0))
        clicks = GaugeMetricFamily("merci_clicks_stored", "Clicks of the current month stored by the workers.",
                                   labels=["period"])
        clicks.add_metric([f"{current:%Y-%m}"], int(stored))
        families: list[Metric] = [queue, clicks]
        specs = [("shards", "Shards of the month close."), ("shards_done", "Shards of the month close done."),
                 ("duration_seconds", "Time the month close took, or has taken so far."),
                 ("supporters", "Supporters charged by the month close so far."),
                 ("charged_cents", "Budgets charged by the month close so far, in minor units.")]
        per_close = {key: GaugeMetricFamily(f"merci_month_close_{key}", text, labels=["period"])
                     for key, text in specs}
        status = GaugeMetricFamily("merci_month_close_status", "1 for the status of each recent month close.",
                                   labels=["period", "status"])
        for r in closes:
            label = [f"{r['period']:%Y-%m}"]
            for key, value in (("shards", r["shards"]), ("shards_done", r["done"]),
                               ("duration_seconds", r["seconds"]), ("supporters", r["supporters"]),
                               ("charged_cents", r["charged"])):
                per_close[key].add_metric(label, float(value))
            for s in CLOSE_STATUSES:
                status.add_metric([*label, s], 1.0 if r["status"] == s else 0.0)
        families += [*per_close.values(), status, GaugeMetricFamily(
            "merci_month_close_previous_done", "1 when last month is closed (or had no clicks to close).",
            value=1.0 if previous_done else 0.0)]
        return families

    def collect(self) -> Iterator[Metric]:
        yield from self.families
        yield GaugeMetricFamily("merci_metrics_database_up", "1 when the last read of the database gauges worked.",
                                value=self.up)

    def describe(self) -> Iterable[Metric]:
        return []  # nothing to check at registration; collect() reads the cache


# ------------------------------------------------------------------ workers (merci_system)

REJECTION_REASONS = ("OWN_THING", "ALREADY_THIS_MONTH", "MONTH_CLOSED", "INVALID_URL")
PAYOUT_STATUSES = ("pending", "sent", "failed")


class SystemGauges(Collector):
    """What only merci_system may read: the ledger's imbalance (the sum of every entry,
    0 unless a cent was created or destroyed) and the clicks the workers refused."""

    def __init__(self, dsn: str, *, ttl: float, ledger_ttl: float) -> None:
        self.dsn = dsn
        self.ttl = ttl
        self.ledger_ttl = ledger_ttl
        self.lock = threading.Lock()
        self.fetched = self.ledger_fetched = -math.inf
        self.rejected: dict[str, int] = {}
        self.payouts: dict[str, int] = {}
        self.pending_age = 0.0
        self.imbalance: int | None = None
        self.checked_at = 0.0
        self.up = 0.0

    async def read(self, ledger: bool) -> None:
        from merci.audit import imbalance

        conn = await asyncpg.connect(self.dsn, timeout=10, command_timeout=120)
        try:
            rows = await conn.fetch("select reason, count(*)::bigint as n from click_rejections group by reason")
            self.rejected = {r["reason"]: int(r["n"]) for r in rows}
            rows = await conn.fetch("select status, count(*)::bigint as n from payouts group by status")
            self.payouts = {r["status"]: int(r["n"]) for r in rows}
            self.pending_age = float(await conn.fetchval(
                "select coalesce(extract(epoch from now() - min(created_at)), 0)::float8 from payouts"
                " where status = 'pending'"))
            if ledger:
                self.imbalance = await imbalance(conn)
                self.checked_at = time.time()
        finally:
            await conn.close()

    def refresh(self) -> None:
        with self.lock:
            now = time.monotonic()
            if now - self.fetched < self.ttl:
                return
            ledger = now - self.ledger_fetched >= self.ledger_ttl
            try:
                asyncio.run(self.read(ledger))
                self.up = 1.0
                if ledger:
                    self.ledger_fetched = now
            except Exception as exc:
                self.up = 0.0
                log.warning("metrics_refresh_failed", error=f"{type(exc).__name__}: {exc}")
            self.fetched = now

    def collect(self) -> Iterator[Metric]:
        self.refresh()
        rejected = CounterMetricFamily("merci_clicks_rejected", "Accepted clicks the workers refused, by reason.",
                                       labels=["reason"])
        for reason in sorted({*REJECTION_REASONS, *self.rejected}):
            rejected.add_metric([reason], self.rejected.get(reason, 0))
        yield rejected
        payouts = GaugeMetricFamily("merci_payouts", "Payouts by status (pending: asked, not yet sent).",
                                    labels=["status"])
        for status in PAYOUT_STATUSES:
            payouts.add_metric([status], self.payouts.get(status, 0))
        yield payouts
        yield GaugeMetricFamily("merci_payouts_pending_oldest_seconds",
                                "How long the oldest pending payout has waited (0: none).", value=self.pending_age)
        if self.imbalance is not None:
            yield GaugeMetricFamily("merci_ledger_imbalance_cents", "Sum of every ledger entry: always 0.",
                                    value=self.imbalance)
            yield GaugeMetricFamily("merci_ledger_checked_timestamp_seconds",
                                    "When the ledger's imbalance was last computed.", value=self.checked_at)
        yield GaugeMetricFamily("merci_metrics_database_up", "1 when the last read of the database gauges worked.",
                                value=self.up)

    def describe(self) -> Iterable[Metric]:
        return []


def serve_worker_metrics() -> int:
    """A Dramatiq fork process in place of its own exposition server: prometheus_client's
    server, on dramatiq_prom_host and dramatiq_prom_port, with the multiprocess metrics of
    the worker processes and SystemGauges (settings.metrics_ledger off: without). Dramatiq
    stops a fork with SIGTERM, which raises SystemExit here."""
    from dramatiq.middleware import prometheus as dramatiq_prometheus
    from prometheus_client import multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=dramatiq_prometheus.DB_PATH)  # type: ignore[no-untyped-call]
    settings = config.load()
    if settings.metrics_ledger and settings.system_database_url:
        registry.register(SystemGauges(settings.system_database_url, ttl=settings.metrics_cache_seconds,
                                       ledger_ttl=settings.metrics_ledger_seconds))
    server, thread = start_http_server(dramatiq_prometheus.HTTP_PORT, addr=dramatiq_prometheus.HTTP_HOST,
                                       registry=registry)
    try:
        thread.join()
    finally:
        server.shutdown()
        server.server_close()
    return 0
