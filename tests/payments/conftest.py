"""Fixtures of the payment tests: the fake Stripe (tests/payments/fake_stripe.py) in a
process of its own, an API and a worker that speak to it, and helpers that sign and
deliver Stripe's events as Stripe does."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Service, free_port, migrated_database, service_env, start_api, start_worker, wait_http
from tests.payments.fake_stripe import sign

SECRET = "whsec_test_merci_payments"
KEY = "sk_test_merci_payments"


class FakeStripe:
    def __init__(self, base: str) -> None:
        self.base = base
        self.http = httpx.Client(base_url=base, timeout=30)

    def pay(self, session: str, *, succeed: bool = True) -> list[dict[str, Any]]:
        return self.http.post(f"/_fake/pay/{session}", json={"succeed": succeed}).json()  # type: ignore[no-any-return]

    def event(self, kind: str, obj_id: str, **changes: Any) -> dict[str, Any]:
        return self.http.post("/_fake/event", json={"type": kind, "id": obj_id, "changes": changes}).json()  # type: ignore[no-any-return]

    def dispute(self, payment_intent: str, amount: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"payment_intent": payment_intent}
        if amount is not None:
            body["amount"] = amount
        return self.http.post("/_fake/dispute", json=body).json()  # type: ignore[no-any-return]

    def onboard(self, account: str) -> dict[str, Any]:
        return self.http.post(f"/_fake/onboard/{account}").json()  # type: ignore[no-any-return]

    def state(self) -> dict[str, Any]:
        return self.http.get("/_fake/state").json()  # type: ignore[no-any-return]

    def objects(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.state()["objects"].values() if o.get("object") == kind]


@pytest.fixture(scope="session")
def pay_db(server_url: str) -> Iterator[str]:
    """A database of the payment tests' own: their worker consumes every queued message
    of its database, which must not be the session's (other tests read theirs)."""
    with migrated_database(server_url, "merci_payments") as dsn:
        yield dsn


@pytest.fixture(scope="session")
def fake_stripe(pay_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeStripe]:
    port = free_port()
    log = tmp_path_factory.mktemp("fake-stripe") / "fake.log"
    svc = Service([sys.executable, "-m", "tests.payments.fake_stripe", "--port", str(port)],
                  service_env(pay_db, FAKE_STRIPE_WEBHOOK_SECRET=SECRET), log)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", svc)
        yield FakeStripe(f"http://127.0.0.1:{port}")
    finally:
        svc.stop()


def stripe_env(fake: FakeStripe) -> dict[str, str]:
    return {"STRIPE_API_KEY": KEY, "STRIPE_WEBHOOK_SECRET": SECRET, "STRIPE_API_BASE": fake.base}


@pytest.fixture(scope="session")
def paying_api(pay_db: str, fake_stripe: FakeStripe, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An API with Stripe (the fake) configured; Stripe's checkout delivers to it."""
    svc, base = start_api(pay_db, tmp_path_factory.mktemp("paying-api"), **stripe_env(fake_stripe))
    fake_stripe.http.post("/_fake/config", json={"webhook_url": f"{base}/webhooks/stripe"})
    try:
        yield base
    finally:
        svc.stop()


@pytest.fixture(scope="session")
def paying_worker(pay_db: str, fake_stripe: FakeStripe,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = start_worker(pay_db, tmp_path_factory.mktemp("paying-worker") / "worker.log", **stripe_env(fake_stripe))
    try:
        yield svc
    finally:
        svc.stop()


def deliver(api: str, event: dict[str, Any] | str, *, secret: str = SECRET, timestamp: int | None = None,
            signature: str | None = None) -> httpx.Response:
    """POST an event to /webhooks/stripe, signed as Stripe signs (or as told)."""
    body = event if isinstance(event, str) else json.dumps(event)
    header = signature if signature is not None else sign(body, secret, timestamp)
    return httpx.post(f"{api}/webhooks/stripe", content=body, timeout=30,
                      headers={"Stripe-Signature": header, "Content-Type": "application/json"})


def root() -> Path:
    return Path(__file__).resolve().parent
