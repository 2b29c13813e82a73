"""Dramatiq workers. `dramatiq workers` (or `merci worker`) loads this package:
the broker is configured from the environment, then each queue's actors."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.middleware.prometheus import Prometheus

from merci import config
from merci.queue import make_broker

settings = config.load()
broker = make_broker(settings.broker_url, settings.system_database_url)
# Dramatiq 2 does not add its Prometheus middleware by itself. It serves on
# dramatiq_prom_port (9191); tests running several workers on one host turn it off.
if os.environ.get("MERCI_WORKER_METRICS", "1") != "0":
    broker.add_middleware(Prometheus())
dramatiq.set_broker(broker)

from workers import clicks, directory, money, system  # noqa: E402,F401  (actors register on import)
