"""`/metrics` on the API and the workers' metrics port, scraped while clicks are
accepted, queued, ingested and refused, and while a month is closed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from merci.clicks import CLICK_QUEUE, INGEST_ACTOR, month_closing, sign_batch
from merci.config import load
from merci.db import migrate
from merci.queue import Queue, make_broker
from tests.conftest import (
    ROOT,
    GraphQLClient,
    create_database,
    drop_database,
    free_port,
    service_env,
    sign_up,
    start_api,
)
from tests.processes import fetch, merci, scrape, value, wait_until

FLATTR = """mutation Flattr($input: FlattrInput!) { flattr(input: $input) {
  click { status } errors: userErrors { field reason: code } } }"""
NOW = {"MERCI_METRICS_CACHE_SECONDS": "0", "MERCI_METRICS_LEDGER_SECONDS": "0"}


def test_business_metrics_move(server_url: str, tmp_path: Path) -> None:
    dsn = create_database(server_url, "merci_ops_metrics")  # its own: the current month gets closed
    asyncio.run(migrate(dsn))
    period = f"{datetime.now(UTC):%Y-%m}"
    prom_port = free_port()
    worker_env = dict(NOW, MERCI_WORKER_METRICS="1", dramatiq_prom_host="127.0.0.1",
                      dramatiq_prom_port=str(prom_port), dramatiq_prom_db=str(tmp_path / "prom"))
    api, base = start_api(dsn, tmp_path, **NOW)
    worker = close = None
    try:
        metrics_url = base + "/metrics"
        before = scrape(metrics_url)
        assert value(before, "merci_metrics_database_up") == 1
        assert value(before, "merci_clicks_accepted_total") == 0
        assert value(before, "merci_clicks_stored", period=period) == 0
        assert value(before, "merci_month_close_previous_done") == 1  # last month had nothing to close

        gql = GraphQLClient(base)
        fan_account = sign_up(gql)
        fan, fan_handle = gql.as_(fan_account["token"]), fan_account["handle"]
        fan("mutation { topUp(input: {amount: 1000}) { userErrors { code } } }")
        for i in range(3):
            out = fan(FLATTR, {"input": {"url": f"https://metrics-{i}.example/", "idempotencyKey": f"m{i}"}})
            assert out["flattr"]["errors"] == [] and out["flattr"]["click"]["status"] == "PENDING"
        poor = gql.as_(sign_up(gql)["token"])
        refused = poor(FLATTR, {"input": {"url": "https://metrics-0.example/", "idempotencyKey": "p"}})
        assert refused["flattr"]["errors"] == [{"field": None, "reason": "NO_MEANS"}]  # aliases, still counted
        assert gql.raw("{ nope }").status_code == 200
        forged = httpx.post(base + "/graphql", json={"query": "{ me { id } }"},
                            headers={"authorization": "Bearer ms_1_forged"})
        assert forged.status_code == 200 and forged.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

        queued = scrape(metrics_url)  # accepted, in the broker, not yet stored: no worker runs
        assert value(queued, "merci_clicks_accepted_total") == 3
        assert value(queued, "merci_queue_messages", queue="clicks", state="ready") >= 1
        assert value(queued, "merci_clicks_stored", period=period) == 0
        assert value(queued, "merci_graphql_operations_total", operation="Flattr", type="mutation") == 4
        assert value(queued, "merci_graphql_root_fields_total", type="mutation", field="flattr") == 4
        assert value(queued, "merci_user_errors_total", mutation="flattr", code="NO_MEANS") == 1
        assert value(queued, "merci_graphql_errors_total", code="GRAPHQL_VALIDATION_FAILED") == 1
        assert value(queued, "merci_graphql_errors_total", code="UNAUTHENTICATED") == 1
        assert value(queued, "merci_http_requests_total", route="/graphql", method="POST", status="200") >= 8
        assert value(queued, "merci_graphql_operation_duration_seconds_count", operation="Flattr",
                     type="mutation") == 4

        worker = merci(dsn, tmp_path / "worker.log", "worker", "--threads", "2", **worker_env)
        ingested = wait_until(lambda: (s := scrape(metrics_url))
                              and value(s, "merci_clicks_stored", period=period) == 3
                              and value(s, "merci_queue_messages", queue="clicks", state="ready") == 0
                              and value(s, "merci_queue_messages", queue="clicks", state="in_flight") == 0
                              and s, 60, "clicks stored and the queue drained")
        assert value(ingested, "merci_clicks_accepted_total") == 3
        workers_url = f"http://127.0.0.1:{prom_port}/metrics"
        on_workers = wait_until(lambda: _try(scrape, workers_url), 30, "the workers' metrics port")
        assert value(on_workers, "dramatiq_messages_total", queue_name="clicks", actor_name="clicks.ingest") >= 1
        assert value(on_workers, "merci_ledger_imbalance_cents") == 0
        assert value(on_workers, "merci_clicks_rejected_total", reason="MONTH_CLOSED") == 0
        assert ("merci_ledger_imbalance_cents", frozenset()) in on_workers
        assert worker.stop() == 0  # SIGTERM: a clean exit

        # The close starts (in the command), but its shards wait for a money worker.
        close = subprocess.Popen([sys.executable, "-m", "runtime.cli", "close-month", period, "--force", "--shards",
                                  "4", "--timeout", "120"], env=service_env(dsn), cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        running = wait_until(lambda: (s := scrape(metrics_url))
                             and value(s, "merci_month_close_status", period=period, status="running") == 1
                             and value(s, "merci_queue_messages", queue="money", state="ready") >= 1 and s,
                             30, "the close to start and wait for a worker")
        assert value(running, "merci_month_close_shards_done", period=period) == 0
        shards = value(running, "merci_month_close_shards", period=period)
        assert shards >= 1

        worker = merci(dsn, tmp_path / "worker2.log", "worker", "--threads", "2", **worker_env)
        out, err = close.communicate(timeout=120)
        assert close.returncode == 0, out + err
        done = scrape(metrics_url)
        assert value(done, "merci_month_close_status", period=period, status="done") == 1
        assert value(done, "merci_month_close_status", period=period, status="running") == 0
        assert value(done, "merci_month_close_shards_done", period=period) == shards
        assert value(done, "merci_month_close_supporters", period=period) == 1
        assert value(done, "merci_month_close_charged_cents", period=period) == 500  # the default budget
        assert value(done, "merci_month_close_duration_seconds", period=period) > 0

        # A click of the closed month: refused by the API at once (issue 17)...
        late = fan(FLATTR, {"input": {"url": "https://metrics-late.example/", "idempotencyKey": "late"}})
        assert late["flattr"]["errors"] == [{"field": None, "reason": "MONTH_CLOSED"}]
        # ...and one the API checked just before the close began never reaches a worker: its
        # write finds the close (migration 0030), and the API answers it MONTH_CLOSED too.
        fan_id, tenant = fetch(dsn, "select id, tenant_id from accounts where handle = $1", fan_handle)[0]
        secret = load(database_url=dsn).secret_key
        now = datetime.now(UTC)
        batch = [[fan_id, tenant, None, "https://metrics-late.example/", "late", now.isoformat(), "click"]]
        queue = Queue(make_broker("", dsn))
        try:
            with pytest.raises(Exception) as late_write:
                queue.send(INGEST_ACTOR, batch, sign_batch(batch, secret), queue_name=CLICK_QUEUE)
            assert month_closing(late_write.value), late_write.value
            # What the workers refuse is counted by reason: a batch (signed, as the API's are)
            # naming a thing that does not exist, in a month still open.
            later = (now + timedelta(days=40)).isoformat()
            nothing = [[fan_id, tenant, 2**62, None, "nothing", later, "click"]]
            queue.send(INGEST_ACTOR, nothing, sign_batch(nothing, secret), queue_name=CLICK_QUEUE)
        finally:
            queue.close()
        refusal = wait_until(lambda: (s := _try(scrape, workers_url))
                             and value(s, "merci_clicks_rejected_total", reason="INVALID_URL") == 1 and s,
                             60, "the refused click on the workers' port")
        assert value(refusal, "merci_clicks_rejected_total", reason="MONTH_CLOSED") == 0
        assert value(refusal, "merci_ledger_imbalance_cents") == 0
        assert value(refusal, "merci_metrics_database_up") == 1
        assert value(scrape(metrics_url), "merci_clicks_accepted_total") == 3  # the late one was refused
    finally:
        if close is not None and close.poll() is None:
            close.kill()
            close.communicate()
        if worker is not None:
            worker.stop()
        api.stop()
        drop_database(server_url, dsn)


def _try(fn, *args):  # type: ignore[no-untyped-def]
    try:
        return fn(*args)
    except (httpx.HTTPError, AssertionError):
        return None


def test_metrics_endpoint_is_text_exposition(api_url: str) -> None:
    r = httpx.get(api_url + "/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "# TYPE merci_http_requests_total counter" in r.text
    assert "merci_queue_messages{queue=\"clicks\",state=\"ready\"}" in r.text


def test_metrics_on_their_own_port(database_url: str, tmp_path: Path) -> None:
    """MERCI_METRICS_PORT: /metrics there and only there; that port serves nothing else."""
    metrics_port = free_port()
    api, base = start_api(database_url, tmp_path, MERCI_METRICS_PORT=str(metrics_port))
    try:
        assert httpx.post(base + "/graphql", json={"query": "{ __typename }"}).status_code == 200
        assert httpx.get(base + "/metrics").status_code == 404  # the API's port: no metrics
        private = f"http://127.0.0.1:{metrics_port}"
        r = httpx.get(private + "/metrics")
        assert r.status_code == 200 and 'merci_http_requests_total{method="POST",route="/graphql"' in r.text
        for path in ("/graphql", "/healthz", "/directory"):
            assert httpx.get(private + path).status_code == 404, path
    finally:
        api.stop()
