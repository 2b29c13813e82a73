"""Click receipts settle (issue 14): ACCEPTED once stored, REFUSED with the code when
the API refused the click at once or the workers did, PENDING only while it is really
queued, and UNKNOWN for a key never sent. Through the real API (fast path and
Strawberry alike), then a real worker; the broker refusing a batch forgets its
receipts; the scheduler's purge changes no answer."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from merci import clicks, config
from merci.clicks import Handoff, PrecheckBatcher, check_request
from merci.ids import to_global
from tests import factories as f
from tests.conftest import (
    GraphQLClient,
    Service,
    create_database,
    drop_database,
    fast_and_slow_apis,
    service_env,
    system_scalar,
    wait_for,
)

FLATTR = """mutation($input: FlattrInput!) { flattr(input: $input) {
  click { status } userErrors { code } } }"""
RECEIPT = """query($key: String!) { me { clickReceipt(idempotencyKey: $key) {
  idempotencyKey status reason period thing { id } } } }"""


@pytest.fixture(scope="module")
def world(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A database of its own (a worker drains it), two APIs on it (with and without the
    fast path), a funded supporter, a poor one, and things."""
    from merci.db import migrate

    dsn = create_database(server_url, "merci_receipts")
    asyncio.run(migrate(dsn))

    async def people() -> dict[str, Any]:
        conn = await asyncpg.connect(config.with_user(dsn, config.SYSTEM_ROLE))
        try:
            from datetime import timedelta

            from merci.accounts import issue_token
            from merci.db import Scope, set_scope

            tid = await f.merci_tenant(conn)
            fan = await f.supporter(conn, tid, budget=500, funds=10_000)
            poor = await f.supporter(conn, tid, budget=500, funds=0)
            creator = await f.person(conn, tid, "creator")
            async with conn.transaction():
                await set_scope(conn, Scope(tid))
                things = [await f.thing(conn, tid, creator) for _ in range(6)]
                own = await f.thing(conn, tid, fan)
                # clicked this month already (stored): a new click on it is refused at once
                await f.click(conn, tid, fan, things[5], datetime.now(UTC).isoformat())
                tokens = {who: await issue_token(conn, tenant_id=tid, account_id=pk, ttl=timedelta(hours=1))
                          for who, pk in (("fan", fan), ("poor", poor))}
            return {"tid": tid, "fan": fan, "things": things, "own": own, "tokens": tokens}
        finally:
            await conn.close()

    data = asyncio.run(people())
    tmp = tmp_path_factory.mktemp("receipts")
    with fast_and_slow_apis(dsn, tmp) as (fast, slow):
        yield {**data, "dsn": dsn, "fast": fast, "slow": slow, "tmp": tmp}
    drop_database(server_url, dsn)


def receipt(client: GraphQLClient, key: str) -> dict[str, Any]:
    return client(RECEIPT, {"key": key})["me"]["clickReceipt"]  # type: ignore[no-any-return]


def flattr(client: GraphQLClient, **input: str) -> dict[str, Any]:
    return client(FLATTR, {"input": input})["flattr"]  # type: ignore[no-any-return]


def test_receipts_settle(world: dict[str, Any]) -> None:
    things = [to_global("Thing", t) for t in world["things"]]
    period = f"{datetime.now(UTC):%Y-%m}"
    for base in ("fast", "slow"):  # both paths record what they answered
        fan = GraphQLClient(world[base], world["tokens"]["fan"])
        poor = GraphQLClient(world[base], world["tokens"]["poor"])
        k = base + "-"
        # Never sent: UNKNOWN, not PENDING.
        assert receipt(fan, k + "never") == {"idempotencyKey": k + "never", "status": "UNKNOWN", "reason": None,
                                             "period": None, "thing": None}
        # Refused at once, for each reason the API gives, and read at once as REFUSED.
        refusals = {
            k + "again": ({"thingId": things[5]}, "ALREADY_THIS_MONTH", fan),
            k + "own": ({"thingId": to_global("Thing", world["own"])}, "OWN_THING", fan),
            k + "ghost": ({"thingId": to_global("Thing", 999_999_999)}, "UNKNOWN_THING", fan),
            k + "bad-url": ({"url": "notaurl"}, "INVALID_URL", fan),
            k + "bad-id": ({"thingId": "nope"}, "INVALID_ID", fan),
            k + "both": ({"url": "https://a.example/", "thingId": things[0]}, "INVALID_TARGET", fan),
            k + "broke": ({"thingId": things[0]}, "NO_MEANS", poor),
        }
        for key, (target, code, who) in refusals.items():
            assert flattr(who, idempotencyKey=key, **target) == {"click": None, "userErrors": [{"code": code}]}
            got = receipt(who, key)
            assert (got["status"], got["reason"], got["period"]) == ("REFUSED", code, period), (key, got)
        assert receipt(fan, k + "again")["thing"] == {"id": things[5]}
        # Not a key at all: nothing to remember.
        assert flattr(fan, idempotencyKey=" ", thingId=things[0])["userErrors"] == [
            {"code": "INVALID_IDEMPOTENCY_KEY"}]
        # Queued (no worker runs yet): PENDING, and it stays so while queued.
        first = things[0] if base == "fast" else things[2]
        assert flattr(fan, idempotencyKey=k + "queued", thingId=first)["click"] == {"status": "PENDING"}
        assert receipt(fan, k + "queued")["status"] == "PENDING"
        # Accepted by the API (the first is not stored yet), refused by the worker later.
        assert flattr(fan, idempotencyKey=k + "twice", thingId=first)["click"] == {"status": "PENDING"}
        assert flattr(fan, idempotencyKey=k + "by-url", url=f"https://{base}.receipts.example/new")["click"] == {
            "status": "PENDING"}
        assert {receipt(fan, k + key)["status"] for key in ("twice", "by-url", "queued")} == {"PENDING"}

    worker = Service([sys.executable, "-m", "dramatiq", "workers", "--processes", "1", "--threads", "2"],
                     service_env(world["dsn"]), Path(world["tmp"]) / "worker.log")
    try:
        fan = GraphQLClient(world["fast"], world["tokens"]["fan"])
        for k in ("fast-", "slow-"):
            settled = wait_for(lambda k=k: (r := receipt(fan, k + "by-url"))["status"] != "PENDING" and r,
                               what="the click by URL stored")
            assert settled["status"] == "ACCEPTED" and settled["thing"] is not None and settled["period"] == period
            queued, twice = receipt(fan, k + "queued"), receipt(fan, k + "twice")
            assert {queued["status"], twice["status"]} == {"ACCEPTED", "REFUSED"}, (queued, twice)
            refused = twice if twice["status"] == "REFUSED" else queued
            assert refused["reason"] == "ALREADY_THIS_MONTH"
    finally:
        worker.stop()

    # The scheduler's purge forgets what the workers settled, and no answer changes.
    before = {k: receipt(fan, k) for k in ("fast-by-url", "fast-queued", "fast-twice", "fast-own", "fast-never")}
    settled = ["fast-by-url", "fast-queued", "fast-twice", "slow-by-url", "slow-queued", "slow-twice"]
    assert system_scalar(world["dsn"], "select count(*) from click_receipts where idempotency_key = any($1)",
                         settled) == len(settled)
    assert asyncio.run(_purge(world["dsn"])) >= len(settled)
    assert system_scalar(world["dsn"], "select count(*) from click_receipts where idempotency_key = any($1)",
                         settled) == 0
    assert {k: receipt(fan, k) for k in before} == before
    assert system_scalar(world["dsn"], "select count(*) from click_receipts where idempotency_key = 'fast-own'") == 1


async def _purge(dsn: str) -> int:
    conn = await asyncpg.connect(config.with_user(dsn, config.SYSTEM_ROLE))
    try:
        return await clicks.purge_receipts(conn)
    finally:
        await conn.close()


async def test_a_batch_the_broker_refuses_is_forgotten(world: dict[str, Any]) -> None:
    """UNAVAILABLE is no refusal: the client may send the click again, so its receipt
    reads UNKNOWN, not PENDING (it was written while the message was being sent)."""
    settings = config.Settings(database_url=world["dsn"], broker_url="").derived()
    sent: list[Any] = []

    async def broker_down(batch: list[list[Any]], signature: str, outbox_id: str | None) -> None:
        sent.append(batch)
        raise ConnectionError("broker down")

    handoff = Handoff(broker_down, secret=settings.secret_key, outbox=False)  # the PostgreSQL broker
    batcher = PrecheckBatcher(settings.app_database_url, currency="EUR", handoff=handoff)
    try:
        requests = [check_request(supporter_id=world["fan"], tenant_id=world["tid"], thing_id=world["things"][4],
                                  url=None, idempotency_key="lost"),
                    check_request(supporter_id=world["fan"], tenant_id=world["tid"], thing_id=world["own"],
                                  url=None, idempotency_key="lost-own")]
        answers = await asyncio.gather(*(batcher.submit(r) for r in requests), return_exceptions=True)
    finally:
        await batcher.close()
    assert sent and [a.code for a in answers] == ["UNAVAILABLE", "OWN_THING"]  # type: ignore[attr-defined]
    fan = GraphQLClient(world["fast"], world["tokens"]["fan"])
    assert receipt(fan, "lost")["status"] == "UNKNOWN"
    assert (receipt(fan, "lost-own")["status"], receipt(fan, "lost-own")["reason"]) == ("REFUSED", "OWN_THING")


async def test_a_batch_kept_in_the_outbox_reads_pending_until_stored(world: dict[str, Any]) -> None:
    """Redis or RabbitMQ (issue 17): the batch is written to click_outbox before it is
    answered, so a broker that refuses it does not refuse the click: PENDING, also once
    its receipt is gone (UNLOGGED), until the scheduler's relay has sent it and a worker
    stored it, which deletes its row."""
    from merci import click_outbox

    settings = config.Settings(database_url=world["dsn"], broker_url="").derived()
    sent: list[Any] = []

    async def broker_down(batch: list[list[Any]], signature: str, outbox_id: str | None) -> None:
        sent.append(outbox_id)
        raise ConnectionError("broker down")

    batcher = PrecheckBatcher(settings.app_database_url, currency="EUR",
                              handoff=Handoff(broker_down, secret=settings.secret_key, outbox=True))
    try:
        requests = [check_request(supporter_id=world["fan"], tenant_id=world["tid"], thing_id=None,
                                  url="https://outboxed.example/post", idempotency_key="outboxed"),
                    check_request(supporter_id=world["fan"], tenant_id=world["tid"], thing_id=world["own"],
                                  url=None, idempotency_key="outboxed-own")]
        answers = await asyncio.gather(*(batcher.submit(r) for r in requests), return_exceptions=True)
    finally:
        await batcher.close()
    assert isinstance(answers[0], clicks.Accepted) and answers[1].code == "OWN_THING"  # type: ignore[union-attr]
    [outbox_id] = sent
    conn = await asyncpg.connect(config.with_user(world["dsn"], config.SYSTEM_ROLE))
    try:
        assert await conn.fetchval("select sent_at is null from click_outbox where id = $1::uuid", outbox_id)
        fan = GraphQLClient(world["fast"], world["tokens"]["fan"])
        assert receipt(fan, "outboxed")["status"] == "PENDING"
        assert (receipt(fan, "outboxed-own")["status"], receipt(fan, "outboxed-own")["reason"]) \
            == ("REFUSED", "OWN_THING")
        await conn.execute("delete from click_receipts where idempotency_key = 'outboxed'")  # as a crash would
        assert receipt(fan, "outboxed") == {"idempotencyKey": "outboxed", "status": "PENDING", "reason": None,
                                            "period": f"{datetime.now(UTC):%Y-%m}", "thing": None}

        # The scheduler's relay sends it (as signed), once; the worker stores it and its row goes.
        relayed: list[tuple[Any, ...]] = []
        assert await click_outbox.relay(conn, lambda *m: relayed.append(m), now=datetime.now(UTC),
                                        resend_after=300) == 1
        assert await click_outbox.relay(conn, lambda *m: relayed.append(m), now=datetime.now(UTC),
                                        resend_after=300) == 0  # sent: not again before it looks lost
        [(batch, signature, relayed_id)] = relayed
        assert relayed_id == outbox_id and clicks.signed(batch, signature, settings.secret_key)
        assert await clicks.ingest(conn, batch, outbox_id=outbox_id, signature=signature) == (1, 0)
        assert await clicks.ingest(conn, batch, outbox_id=outbox_id, signature=signature) == (0, 0)  # once
        assert await conn.fetchval("select count(*) from click_outbox") == 0
    finally:
        await conn.close()
    assert receipt(fan, "outboxed")["status"] == "ACCEPTED"
