"""Shared by the operations tests: scraping metrics, waiting, ledger snapshots."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Service, ledger_snapshot, service_env, system_fetch, system_scalar, wait_for

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    r = httpx.get(url, timeout=10)
    assert r.status_code == 200, r.text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 when the series does not exist (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


# The shared helpers, under the names this package's tests use.
fetch = system_fetch
scalar = system_scalar
ledger = ledger_snapshot


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    return wait_for(predicate, timeout, what, interval=0.2)


def merci(database_url: str, log: Path, *args: str, **env: str) -> Service:
    """A `merci …` command as a service (stopped by PID at teardown)."""
    return Service([sys.executable, "-m", "runtime.cli", *args], service_env(database_url, **env), log)
