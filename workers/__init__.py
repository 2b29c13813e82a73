"""Dramatiq workers. `dramatiq workers` (or `merci worker`) loads this package:
the broker is configured from the environment, then each queue's actors."""

from __future__ import annotations

import dramatiq

from merci import config, observability
from merci.queue import make_broker
from workers import runtime

observability.configure_logging("worker")
observability.configure_tracing("worker")
settings = config.load()
broker = make_broker(settings.broker_url, settings.system_database_url, heartbeat_ttl=settings.broker_heartbeat_ttl)
broker.add_middleware(observability.WorkerContext())  # the message on every log line; a span each
broker.add_middleware(runtime.EventLoop())  # the process's event loop and pool, closed on shutdown
# Dramatiq 2 does not add its Prometheus middleware by itself. It serves on
# dramatiq_prom_port (9191), with Merci's ledger gauges; tests running several workers
# on one host turn it off.
if settings.worker_metrics:
    broker.add_middleware(observability.worker_metrics())
dramatiq.set_broker(broker)

from workers import clicks, directory, discovery, mail, money, system, webhooks  # noqa: E402,F401  (actors register on import)
