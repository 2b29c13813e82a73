"""Webhooks through a real receiver on 127.0.0.1 that checks every signature,
fails the first attempts of each event, and applies each event once (keyed by
Merci-Event-Id): retries back off, redelivered messages post nothing twice, a
replay repeats the event id, and exhausted retries end FAILED, then replayable."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import pytest

from merci import ledger, webhooks
from merci.config import Settings
from merci.ids import to_global
from merci.money import Money
from merci.queue import Queue, make_broker
from tests.api.partners.helpers import World
from tests.conftest import wait_for

CREATE = """mutation($url: String!, $events: [WebhookEvent!]!) { createWebhookEndpoint(input: {url: $url,
  events: $events}) { webhookEndpoint { id url events active } secret userErrors { field code message } } }"""
DELIVERIES = """query($id: ID!) { node(id: $id) { ... on WebhookEndpoint { deliveries { nodes { id eventId event
  status attempts replayOf attemptLog { attempt statusCode error } } } } } }"""
REPLAY = """mutation($id: ID!) { replayWebhookDelivery(input: {id: $id}) {
  webhookDelivery { id eventId status replayOf } userErrors { code } } }"""
REGISTER = """mutation($things: [RegisterThingInput!]!) { registerThings(input: {things: $things}) {
  things { id } userErrors { code } } }"""
FLATTR = """mutation($t: ID!, $k: String!) { flattr(input: {thingId: $t, idempotencyKey: $k}) {
  userErrors { code } } }"""


class Receiver:
    """A partner's endpoint. Side effects are applied once per event id, however often it comes."""

    def __init__(self, failures: int) -> None:
        self.failures = failures  # answer 500 to the first N posts of each event
        self.secret = ""
        self.lock = threading.Lock()
        self.posts: list[dict[str, Any]] = []
        self.applied: dict[str, dict[str, Any]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.receive(self, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/merci"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def receive(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        valid = webhooks.verify(self.secret, handler.headers.get("merci-signature", ""), body)
        event_id = handler.headers.get("merci-event-id", "")
        with self.lock:
            seen = sum(1 for p in self.posts if p["event_id"] == event_id)
            status = 400 if not valid else 500 if seen < self.failures else 200
            self.posts.append({"event_id": event_id, "attempt": handler.headers.get("merci-delivery-attempt"),
                               "type": handler.headers.get("merci-event-type"), "valid": valid, "status": status,
                               "at": time.monotonic()})
            if status == 200 and event_id not in self.applied:
                self.applied[event_id] = json.loads(body)
        handler.send_response(status)
        handler.send_header("content-length", "0")
        handler.end_headers()

    def of(self, event_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [p for p in self.posts if p["event_id"] == event_id]

    def applied_of(self, event_type: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.applied.values() if e["type"] == event_type]


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.server.shutdown()
        r.server.server_close()


def endpoint(world: World, client: Any, receiver: Receiver, events: list[str]) -> str:
    out = client(CREATE, {"url": receiver.url, "events": events})["createWebhookEndpoint"]
    assert out["userErrors"] == [] and out["secret"].startswith("whsec_"), out
    receiver.secret = out["secret"]
    return str(out["webhookEndpoint"]["id"])


async def _close(dsn: str, period: date) -> None:
    from merci.close import close_inline

    conn = await asyncpg.connect(Settings(database_url=dsn).derived().system_database_url)
    try:
        assert await close_inline(conn, period=period, shards=1) == "done"
    finally:
        await conn.close()


async def _payout(dsn: str, tenant_id: int, creator_id: int, amount: int) -> None:
    """A payout journal, as the payout job will post it (earnings → the outside world)."""
    conn = await asyncpg.connect(Settings(database_url=dsn).derived().system_database_url)
    try:
        async with conn.transaction():
            earnings = await ledger.account_id(conn, kind="creator", tenant_id=tenant_id, currency="EUR",
                                               owner_account_id=creator_id)
            out = await ledger.account_id(conn, kind="payout", tenant_id=tenant_id, currency="EUR",
                                          owner_account_id=creator_id)
            await ledger.post(conn, tenant_id=tenant_id, kind="payout", idem_key=f"payout:test:{creator_id}",
                              lines=[(earnings, Money(-amount, "EUR")), (out, Money(amount, "EUR"))])
    finally:
        await conn.close()


def test_signed_retried_deduplicated_and_replayable(world: World, receivers: list[Receiver]) -> None:
    partner = world.partner()
    key = world.api_key(partner, ["webhooks:write", "things:write"])
    receiver = Receiver(failures=2)
    receivers.append(receiver)
    endpoint_id = endpoint(world, key, receiver, ["CLICK_ACCEPTED", "MONTH_CLOSED", "PAYOUT_SENT"])
    creator = int(world.scalar("select id from accounts where handle = $1", partner["handle"]))
    world.prove_site(partner, f"https://{partner['slug']}.example/")
    thing = key(REGISTER, {"things": [{"url": f"https://{partner['slug']}.example/hook", "title": "Hooked",
                                       "ownerId": to_global("Creator", creator)}]})["registerThings"]["things"][0]

    fan = world.supporter()
    assert world.gql.as_(fan["token"])(FLATTR, {"t": thing["id"], "k": "w1"})["flattr"]["userErrors"] == []
    clicked = wait_for(lambda: receiver.applied_of("click.accepted"), what="click.accepted applied")[0]
    assert clicked["data"]["thing"] == {"id": thing["id"], "url": f"https://{partner['slug']}.example/hook"}
    assert clicked["data"]["source"] == "CLICK" and "supporter" not in clicked["data"]  # not the partner's supporter
    posts = receiver.of(clicked["id"])
    assert [(p["attempt"], p["status"], p["valid"]) for p in posts] == [("1", 500, True), ("2", 500, True),
                                                                      ("3", 200, True)]
    gaps = [b["at"] - a["at"] for a, b in zip(posts, posts[1:], strict=False)]
    assert all(g >= 0.09 for g in gaps), gaps  # Dramatiq's backoff (100 ms minimum here)

    deliveries = key(DELIVERIES, {"id": endpoint_id})["node"]["deliveries"]["nodes"]
    assert [(d["event"], d["status"], d["attempts"]) for d in deliveries] == [("CLICK_ACCEPTED", "DELIVERED", 3)]
    assert [a["statusCode"] for a in deliveries[0]["attemptLog"]] == [500, 500, 200]
    delivery = deliveries[0]["id"]

    # The same message delivered twice (at-least-once): no second POST.
    queue = Queue(make_broker("", Settings(database_url=world.dsn).derived().system_database_url))
    try:
        pk = int(world.scalar("select id from webhook_deliveries order by id desc limit 1"))
        queue.send(webhooks.DELIVER_ACTOR, pk, queue_name=webhooks.WEBHOOK_QUEUE)
        queue.send(webhooks.DELIVER_ACTOR, pk, queue_name=webhooks.WEBHOOK_QUEUE)
        wait_for(lambda: world.scalar("select count(*) from dramatiq.queue where queue_name like 'webhooks%'"
                                      " and state <> 'rejected'") == 0, what="redelivery drained")
    finally:
        queue.close()
    assert len(receiver.of(clicked["id"])) == 3

    # A replay sends the same event id again: the receiver's side effect stays single.
    replay = key(REPLAY, {"id": delivery})["replayWebhookDelivery"]
    assert replay["userErrors"] == [] and replay["webhookDelivery"]["eventId"] == clicked["id"]
    assert replay["webhookDelivery"]["replayOf"] == delivery
    wait_for(lambda: len(receiver.of(clicked["id"])) == 4, what="the replay")
    assert receiver.of(clicked["id"])[-1]["status"] == 200
    assert len(receiver.applied_of("click.accepted")) == 1

    # month.closed and payout.sent, signed and retried the same way.
    asyncio.run(_close(world.dsn, date(2020, 5, 1)))
    closed = wait_for(lambda: receiver.applied_of("month.closed"), what="month.closed")
    assert [e["data"] for e in closed] == [{"period": "2020-05"}]
    asyncio.run(_payout(world.dsn, partner["tenant_id"], creator, 150))
    paid = wait_for(lambda: receiver.applied_of("payout.sent"), what="payout.sent")[0]
    assert paid["data"] == {"creator": {"id": to_global("Creator", creator)},
                            "amount": {"amount": 150, "currency": "EUR"}}
    assert all(p["valid"] for p in receiver.posts)
    assert len(receiver.applied) == len({p["event_id"] for p in receiver.posts}) == 3


def test_exhausted_retries_fail_then_replay(world: World, receivers: list[Receiver]) -> None:
    partner = world.partner()
    key = world.api_key(partner, ["webhooks:write"])
    down = Receiver(failures=100)
    receivers.append(down)
    endpoint_id = endpoint(world, key, down, ["MONTH_CLOSED"])
    asyncio.run(_close(world.dsn, date(2020, 6, 1)))

    def failed() -> list[dict[str, Any]]:
        nodes = key(DELIVERIES, {"id": endpoint_id})["node"]["deliveries"]["nodes"]
        return [d for d in nodes if d["status"] == "FAILED"]

    dead = wait_for(failed, what="retries exhausted")[0]
    assert dead["attempts"] == 4  # the first try and MERCI_WEBHOOK_MAX_RETRIES=3 retries
    assert [a["statusCode"] for a in dead["attemptLog"]] == [500] * 4
    down.failures = 0  # the partner fixed its endpoint
    replay = key(REPLAY, {"id": dead["id"]})["replayWebhookDelivery"]
    assert replay["userErrors"] == []
    wait_for(lambda: down.applied_of("month.closed"), what="the replay after the fix")
    assert [p["status"] for p in down.of(dead["eventId"])] == [500] * 4 + [200]


def test_endpoints_are_checked_and_signatures_bind_time_and_body(world: World) -> None:
    partner = world.partner()
    key = world.api_key(partner, ["webhooks:write"])
    refused = key(CREATE, {"url": "http://10.1.2.3/hook", "events": ["CLICK_ACCEPTED"]})["createWebhookEndpoint"]
    assert [e["code"] for e in refused["userErrors"]] == ["FORBIDDEN_ADDRESS"]
    bad = key(CREATE, {"url": "ftp://partner.example/", "events": ["CLICK_ACCEPTED"]})["createWebhookEndpoint"]
    assert [e["code"] for e in bad["userErrors"]] == ["INVALID_URL"]
    unknown = key.raw(CREATE, {"url": "https://partner.example/", "events": ["CLICK_REFUNDED"]}).json()
    assert "CLICK_REFUNDED" in unknown["errors"][0]["message"]
    no_scope = world.api_key(partner, ["read"])(CREATE, {"url": "https://partner.example/",
                                                         "events": ["CLICK_ACCEPTED"]})["createWebhookEndpoint"]
    assert [e["code"] for e in no_scope["userErrors"]] == ["FORBIDDEN"]
    assert world.scalar("select count(*) from webhook_endpoints where tenant_id = $1", partner["tenant_id"]) == 0

    secret, body, now = "whsec_test", b'{"id":"x"}', int(time.time())
    header = webhooks.sign(secret, now, body)
    assert webhooks.verify(secret, header, body)
    assert not webhooks.verify(secret, header, body + b" ")
    assert not webhooks.verify("whsec_other", header, body)
    assert not webhooks.verify(secret, webhooks.sign(secret, now - 3600, body), body)  # replayed an hour later
