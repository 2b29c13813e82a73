"""Dramatiq workers. `dramatiq workers` (or `merci worker`) loads this package:
the broker is configured from the environment, then each queue's actors."""

from __future__ import annotations

import dramatiq
from dramatiq.middleware.prometheus import Prometheus

from merci import config
from merci.queue import make_broker

settings = config.load()
broker = make_broker(settings.broker_url, settings.system_database_url)
# Dramatiq 2 does not add its Prometheus middleware by itself.
broker.add_middleware(Prometheus())
dramatiq.set_broker(broker)

from workers import system  # noqa: E402,F401  (actors register on import)
