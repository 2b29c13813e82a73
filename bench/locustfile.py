"""The traffic of bench/load_test.py, for locust: honest users (supporters clicking and
reading their dashboard, readers searching the directory, a partner registering things in
bulk), each from an address of its own, and an attacker flooding logIn with wrong
passwords from one address. The world (tokens, sites, the partner's key) comes from the
JSON file named by MERCI_LOAD_WORLD; the API processes from MERCI_LOAD_HOSTS (comma
separated: each user sticks to one, as behind a load balancer).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import uuid
from pathlib import Path
from typing import Any

from locust import HttpUser, between, constant_throughput, events, task

WORLD: dict[str, Any] = json.loads(Path(os.environ["MERCI_LOAD_WORLD"]).read_text())
HOSTS = os.environ["MERCI_LOAD_HOSTS"].split(",")
OPERATIONS = Path(__file__).resolve().parent.parent / "tests" / "gateway" / "operations"
DASHBOARD, SEARCH, REGISTER, LOG_IN, FLATTR = (
    (OPERATIONS / f"{name}.graphql").read_text()
    for name in ("Dashboard", "SearchSites", "RegisterThings", "LogIn", "Flattr"))
WORDS = ["zither", "tea", "garden", "recipes", "photos", "music", "essays", "bread", "cycling", "poems"]
_numbers = itertools.count()
_pending = [0]  # clicks answered PENDING in this run: bench/load_test.py checks each is stored


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def _count_pending(environment: Any, **kwargs: Any) -> None:
    with open(os.environ["MERCI_LOAD_PENDING"], "a") as out:
        out.write(f"{_pending[0]}\n")


class Honest(HttpUser):
    """One person, using the API as the web app and a partner's backend would."""

    host = HOSTS[0]
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        n = next(_numbers)
        self.base = HOSTS[n % len(HOSTS)]
        self.token = WORLD["tokens"][n % len(WORLD["tokens"])]
        self.address = f"10.{1 + n // 250}.{n % 250}.{1 + n % 200}"
        self.key = "none"

    def post(self, name: str, query: str, variables: dict[str, Any], bearer: str | None) -> None:
        headers = {"x-forwarded-for": self.address}
        if bearer:
            headers["authorization"] = f"Bearer {bearer}"
        with self.client.post(f"{self.base}/graphql", json={"query": query, "variables": variables},
                              headers=headers, name=name, catch_response=True) as r:
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            if r.status_code != 200 or body.get("errors"):
                r.failure(f"{r.status_code} {str(body.get('errors'))[:120]}")
                return
            payload = next(iter(body["data"].values())) or {}
            if isinstance(payload, dict) and payload.get("userErrors"):
                r.failure(f"userErrors {payload['userErrors'][0]['code']}")
            elif name == "click" and (payload.get("click") or {}).get("status") == "PENDING":
                _pending[0] += 1

    @task(4)
    def click(self) -> None:
        self.key = uuid.uuid4().hex
        site = random.choice(WORLD["sites"])
        self.post("click", FLATTR, {"input": {"url": f"{site}post-{random.randrange(10**6)}",
                                              "idempotencyKey": self.key}}, self.token)

    @task(2)
    def dashboard(self) -> None:
        self.post("dashboard", DASHBOARD, {"key": self.key}, self.token)

    @task(3)
    def search(self) -> None:
        self.post("search", SEARCH, {"q": random.choice(WORDS)}, None)

    @task(1)
    def partner(self) -> None:
        creator = random.choice(WORLD["creators"])
        things = [{"url": f"{creator['site']}bulk/{uuid.uuid4().hex}", "title": "Bulk", "ownerId": creator["id"]}
                  for _ in range(10)]
        self.post("partner bulk", REGISTER, {"things": things}, WORLD["partner_key"])


class Attacker(HttpUser):
    """Guesses a supporter's password as fast as it can, from one address."""

    host = HOSTS[0]
    # Each attacker at this many guesses a second (the flood's generator runs on the same
    # two cores as the servers here: unbounded, it would measure locust's CPU, not Merci's).
    wait_time = constant_throughput(float(os.environ.get("MERCI_LOAD_ATTACK_RATE", "25")))
    fixed_count = int(os.environ.get("MERCI_LOAD_ATTACKERS", "4"))

    def on_start(self) -> None:
        self.base = HOSTS[next(_numbers) % len(HOSTS)]

    @task
    def guess(self) -> None:
        with self.client.post(f"{self.base}/graphql", name="attack: logIn", catch_response=True,
                              headers={"x-forwarded-for": "203.0.113.66"},
                              json={"query": LOG_IN, "variables": {"input": {
                                  "email": WORLD["victim"], "password": uuid.uuid4().hex}}}) as r:
            if r.status_code >= 500:
                r.failure(f"{r.status_code}")
            else:
                r.success()  # refused (429) or told the password is wrong: what it should get
