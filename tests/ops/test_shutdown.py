"""Graceful shutdown: SIGTERM to the API during a burst of clicks, and to a worker while
it ingests them. Every click the API answered PENDING is stored once a worker runs;
clients refused by the closing server may retry, and those clicks were never accepted."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    GraphQLClient,
    Service,
    free_port,
    migrated_database,
    service_env,
    sign_up,
    start_worker,
    wait_http,
)
from tests.processes import fetch, scalar, wait_until

FLATTR = """mutation($input: FlattrInput!) { flattr(input: $input) { click { status } userErrors { code } } }"""
CLIENTS = 8


@pytest.fixture
def fresh_db(server_url: str) -> Iterator[str]:
    with migrated_database(server_url, "merci_ops_shutdown") as dsn:
        yield dsn


class Burst:
    """Clients clicking new URLs as fast as they can until the server stops answering."""

    def __init__(self, base: str, tokens: list[str]) -> None:
        self.base = base
        self.tokens = tokens
        self.accepted: list[tuple[str, str, float]] = []  # (token, idempotency key, answered at)
        self.refused: list[str] = []
        self.unexpected: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.client, args=(i,), daemon=True) for i in range(len(tokens))]

    def client(self, n: int) -> None:
        with httpx.Client(base_url=self.base, headers={"authorization": f"Bearer {self.tokens[n]}"},
                          timeout=30) as http:
            for i in range(2000):
                key = f"c{n}-{i}"
                try:
                    r = http.post("/graphql", json={"query": FLATTR, "variables": {
                        "input": {"url": f"https://burst-{n}-{i}.example/", "idempotencyKey": key}}})
                except httpx.TransportError as exc:  # connection refused or closed: not accepted
                    with self.lock:
                        self.refused.append(type(exc).__name__)
                    return
                with self.lock:
                    out = r.json()["data"]["flattr"] if r.status_code == 200 and r.json().get("data") else None
                    if out and out["userErrors"] == [] and out["click"]["status"] == "PENDING":
                        self.accepted.append((self.tokens[n], key, time.monotonic()))
                    elif out and [e["code"] for e in out["userErrors"]] == ["UNAVAILABLE"]:
                        self.refused.append("UNAVAILABLE")
                        return
                    else:
                        self.unexpected.append(f"{r.status_code} {r.text[:200]}")
                        return

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self, timeout: float) -> None:
        for t in self.threads:
            t.join(timeout)
        assert not any(t.is_alive() for t in self.threads), "a client hung on a closing server"


def test_sigterm_during_a_burst_loses_no_accepted_click(fresh_db: str, tmp_path: Path) -> None:
    dsn = fresh_db
    port = free_port()
    api = Service([sys.executable, "-m", "runtime.cli", "serve", "all", "--port", str(port), "--grace", "15"],
                  service_env(dsn), tmp_path / "api.log")
    base = f"http://127.0.0.1:{port}"
    worker = start_worker(dsn, tmp_path / "worker1.log", threads=2)
    second = None
    try:
        wait_http(base + "/healthz", api)
        gql = GraphQLClient(base)
        tokens = [sign_up(gql)["token"] for _ in range(CLIENTS)]
        for token in tokens:
            gql.as_(token)("mutation { topUp(input: {amount: 5000}) { userErrors { code } } }")
        handles = {t: gql.as_(t)("{ me { handle } }")["me"]["handle"] for t in tokens}

        burst = Burst(base, tokens)
        burst.start()
        wait_until(lambda: len(burst.accepted) >= 150, 60, "the burst to get going")
        # The worker is ingesting while clicks keep coming: stop it first, then the API.
        # (A worker that took long to start may not have stored any yet: wait until it has.)
        wait_until(lambda: scalar(dsn, "select count(*) from clicks") > 0, 60, "the worker to be ingesting")
        worker.proc.send_signal(signal.SIGTERM)
        sigterm_at = time.monotonic()
        api.proc.send_signal(signal.SIGTERM)
        burst.join(60)
        # uvicorn re-raises the signal once it has shut down cleanly: -SIGTERM, and its log says so.
        assert api.proc.wait(30) in (0, -signal.SIGTERM), api.output()[-3000:]
        assert "Application shutdown complete" in api.output()
        assert worker.proc.wait(60) == 0, worker.output()[-3000:]  # finished its messages, then left
        assert burst.unexpected == []
        assert burst.refused, "the clients must have run into the closed server"
        answered_late = [a for a in burst.accepted if a[2] > sigterm_at]
        assert answered_late, "requests in flight at SIGTERM must still be answered"

        stored_now = scalar(dsn, "select count(*) from clicks")
        second = start_worker(dsn, tmp_path / "worker2.log", threads=2)
        expected = {(handles[t], key) for t, key, _ in burst.accepted}
        wait_until(lambda: scalar(dsn, "select count(*) from dramatiq.queue where queue_name = 'clicks'"
                                       " and state <> 'rejected'") == 0, 60, "the clicks queue to drain")
        rows = fetch(dsn, "select a.handle, c.idempotency_key from clicks c join accounts a on a.id = c.supporter_id")
        stored = {(r[0], r[1]) for r in rows}
        assert expected <= stored, f"accepted but lost: {sorted(expected - stored)[:5]}"
        assert len(rows) == len(stored)  # and none twice
        assert scalar(dsn, "select count(*) from click_rejections") == 0
        assert stored_now <= len(stored)
        assert "Killing" not in worker.output()
    finally:
        api.stop()
        worker.stop()
        if second is not None:
            second.stop()
