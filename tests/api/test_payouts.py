"""Payouts: a creator asks for their earnings; a real worker sends them through the
provider and posts the payout journal. Refusals change nothing, a key asks once, what
pending requests reserve is not available twice, and a provider's refusal leaves the
earnings where they were."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from dramatiq.brokers.stub import StubBroker

from merci import audit, config, ledger, payouts, scheduler
from merci.errors import UserError
from merci.ids import from_global
from merci.metrics import SystemGauges
from merci.money import Money
from merci.payments import DevPayoutProvider, PayoutRefused, Transfer
from merci.queue import Queue
from tests.conftest import GraphQLClient, sign_up, start_worker, system_fetch, system_scalar, unique, wait_for

REQUEST = """mutation($input: RequestPayoutInput!) { requestPayout(input: $input) {
  payout { id status amount { amount formatted } idempotencyKey reference reason }
  userErrors { field code message } } }"""
ME = """{ me { earnings { amount } payoutAvailable { amount }
  payouts(first: 10) { edges { node { id status amount { amount } reference settledAt } } } } }"""


def _system_dsn(database_url: str) -> str:
    return config.Settings(database_url=database_url).derived().system_database_url


async def _credit(database_url: str, account_id: int, amount: int) -> None:
    """Earnings, as a month close credits them (the outside world → the creator)."""
    conn = await asyncpg.connect(_system_dsn(database_url))
    try:
        async with conn.transaction():
            tenant = await conn.fetchval("select tenant_id from accounts where id = $1", account_id)
            outside = await ledger.account_id(conn, kind="external", tenant_id=tenant, currency="EUR")
            mine = await ledger.account_id(conn, kind="creator", tenant_id=tenant, currency="EUR",
                                           owner_account_id=account_id)
            await ledger.post(conn, tenant_id=tenant, kind="correction", idem_key=unique("earned:"),
                              lines=[(outside, Money(-amount, "EUR")), (mine, Money(amount, "EUR"))])
    finally:
        await conn.close()


def creator(gql: GraphQLClient, database_url: str, earned: int) -> tuple[GraphQLClient, int]:
    who = sign_up(gql)
    pk = from_global(who["id"])[1]
    if earned:
        asyncio.run(_credit(database_url, pk, earned))
    return gql.as_(who["token"]), pk


def ask(client: GraphQLClient, **input: Any) -> dict[str, Any]:
    return client(REQUEST, {"input": {"idempotencyKey": unique("k"), **input}})["requestPayout"]  # type: ignore[no-any-return]


def test_refused_requests_change_nothing(gql: GraphQLClient, database_url: str) -> None:
    me, pk = creator(gql, database_url, 2500)
    cases = [
        ({"amount": 999}, "BELOW_THRESHOLD", "amount"),  # the default threshold: 10.00
        ({"amount": 2501}, "INSUFFICIENT_EARNINGS", "amount"),
        ({"amount": 0}, "AMOUNT_TOO_SMALL", "amount"),
        ({"amount": 1500, "idempotencyKey": "  "}, "INVALID_IDEMPOTENCY_KEY", "idempotencyKey"),
        ({"amount": 1500, "idempotencyKey": "x" * 101}, "INVALID_IDEMPOTENCY_KEY", "idempotencyKey"),
        ({"amount": 1500, "provider": "wire"}, "UNKNOWN_PROVIDER", "provider"),
    ]
    for input, code, field in cases:
        out = ask(me, **input)
        assert out["payout"] is None, input
        assert [(e["code"], e["field"]) for e in out["userErrors"]] == [(code, [field])], out
    poor, _ = creator(gql, database_url, 600)
    out = ask(poor)  # all of it: below the threshold
    assert [e["code"] for e in out["userErrors"]] == ["BELOW_THRESHOLD"]
    assert "10.00" in out["userErrors"][0]["message"] and "6.00" in out["userErrors"][0]["message"]
    anonymous = ask(GraphQLClient(str(gql.http.base_url)), amount=1500)  # no session cookie
    assert [e["code"] for e in anonymous["userErrors"]] == ["UNAUTHENTICATED"]
    assert system_scalar(database_url, "select count(*) from payouts where account_id = $1", pk) == 0
    assert me(ME)["me"]["payoutAvailable"]["amount"] == 2500


def test_a_worker_sends_a_payout_once(gql: GraphQLClient, database_url: str, tmp_path: Path) -> None:
    me, pk = creator(gql, database_url, 2500)
    first = ask(me, amount=1500, idempotencyKey="june")
    assert first["userErrors"] == []
    payout = first["payout"]
    assert payout["amount"] == {"amount": 1500, "formatted": "€15.00"}
    assert payout["status"] in ("PENDING", "SENT")
    again = ask(me, amount=1500, idempotencyKey="june")  # a retry: the same payout
    assert again["payout"]["id"] == payout["id"]
    other = ask(me, amount=1500, idempotencyKey="july")  # 15.00 of 25.00 reserved: 10.00 left
    assert [e["code"] for e in other["userErrors"]] == ["INSUFFICIENT_EARNINGS"]
    assert [e["code"] for e in ask(me, amount=1500, idempotencyKey="june")["userErrors"]] == []
    assert [e["code"] for e in ask(me, amount=1200, idempotencyKey="june")["userErrors"]] == ["IDEMPOTENCY_KEY_REUSED"]

    worker = start_worker(database_url, tmp_path / "worker.log")
    try:
        sent = wait_for(lambda: [e["node"] for e in me(ME)["me"]["payouts"]["edges"]
                                 if e["node"]["status"] == "SENT"], what="the payout sent")
    finally:
        worker.stop()
    assert [p["id"] for p in sent] == [payout["id"]]
    assert sent[0]["reference"] == f"dev:merci-payout-{from_global(payout['id'])[1]}" and sent[0]["settledAt"]
    view = me(ME)["me"]
    assert view["earnings"]["amount"] == 1000 and view["payoutAvailable"]["amount"] == 1000
    rows = system_fetch(database_url, "select la.kind, sum(e.amount)::bigint as amount from entries e"
                        " join ledger_accounts la on la.id = e.ledger_account_id"
                        " where la.owner_account_id = $1 and la.kind in ('creator', 'payout') group by 1", pk)
    assert {r["kind"]: r["amount"] for r in rows} == {"creator": 1000, "payout": 1500}
    assert system_scalar(database_url, "select count(*) from journals where idem_key like 'payout:%'"
                         " and id = (select journal_id from payouts where account_id = $1)", pk) == 1
    assert [e["code"] for e in ask(me)["userErrors"]] == []  # the rest: 10.00, the threshold itself


class Flaky:
    """A provider that refuses, or fails once in passing, or sends: the outside world's answers."""

    name = "dev"

    def __init__(self, answer: str) -> None:
        self.answer, self.calls = answer, 0

    async def send(self, *, account_id: int, amount: Money, idempotency_key: str) -> Transfer:
        self.calls += 1
        if self.answer == "refuse":
            raise PayoutRefused("the account at the bank is closed")
        if self.answer == "once" and self.calls == 1:
            raise ConnectionError("the provider did not answer")
        return Transfer("dev", f"flaky:{idempotency_key}")


async def test_refusal_keeps_the_earnings_and_retries_post_once(database_url: str) -> None:
    from tests import factories as f

    settings = config.Settings(database_url=database_url).derived()
    conn = await asyncpg.connect(settings.system_database_url)
    try:
        tenant = await f.merci_tenant(conn)
        who = await f.person(conn, tenant, "maker")
        await _credit(database_url, who, 3000)

        async def pending(key: str, amount: int) -> int:
            async with conn.transaction():
                await conn.execute("select set_config('merci.tenant_id', $1, true)", str(tenant))
                return (await payouts.request(conn, tenant_id=tenant, account_id=who, amount=amount, currency="EUR",
                                              threshold=1000, idempotency_key=key, provider="dev")).id

        refused = await pending("a", 2000)
        assert await payouts.available(conn, account_id=who, currency="EUR") == 1000
        assert await payouts.send(conn, payout_id=refused, provider=Flaky("refuse")) == "failed"
        row = await conn.fetchrow("select status, reason, journal_id from payouts where id = $1", refused)
        assert dict(row) == {"status": "failed", "reason": "the account at the bank is closed", "journal_id": None}
        assert await payouts.available(conn, account_id=who, currency="EUR") == 3000  # nothing reserved any more

        flaky = Flaky("once")
        later = await pending("b", 2000)
        with pytest.raises(ConnectionError):  # passing trouble: Dramatiq retries
            await payouts.send(conn, payout_id=later, provider=flaky)
        assert await conn.fetchval("select status from payouts where id = $1", later) == "pending"
        # Left pending (a lost message, a dead worker): the scheduler sends it again, after a while.
        soon, after = datetime.now(UTC), datetime.now(UTC) + timedelta(seconds=payouts.RESEND_AFTER_SECONDS + 60)
        assert later not in await payouts.stale(conn, now=soon)
        due = await scheduler.tick(conn, settings, Queue(StubBroker()), after)
        assert f"{payouts.PAYOUT_ACTOR} {later}" in due and f"{payouts.PAYOUT_ACTOR} {refused}" not in due
        # A run that posted the journal and died before marking the payout: the retry posts nothing twice.
        async with conn.transaction():
            earned = await ledger.account_id(conn, kind="creator", tenant_id=tenant, currency="EUR",
                                             owner_account_id=who)
            out = await ledger.account_id(conn, kind="payout", tenant_id=tenant, currency="EUR",
                                          owner_account_id=who)
            await ledger.post(conn, tenant_id=tenant, kind="payout", idem_key=f"payout:{later}",
                              lines=[(earned, Money(-2000, "EUR")), (out, Money(2000, "EUR"))])
        assert await payouts.send(conn, payout_id=later, provider=flaky) == "sent"
        assert await payouts.send(conn, payout_id=later, provider=flaky) == "sent"  # done: not sent again
        assert flaky.calls == 2
        assert await conn.fetchval("select count(*) from journals where idem_key = $1", f"payout:{later}") == 1
        assert await payouts.available(conn, account_id=who, currency="EUR") == 1000
        assert await payouts.send(conn, payout_id=later, provider=DevPayoutProvider(env="test")) == "sent"
        # Earnings taken since the request (a correction): nothing is sent, the ledger is left alone.
        uncovered = await pending("c", 1000)
        await _credit(database_url, who, -500)
        assert await payouts.send(conn, payout_id=uncovered, provider=DevPayoutProvider(env="test")) == "failed"
        assert await conn.fetchval("select reason from payouts where id = $1", uncovered) == \
            "the earnings no longer cover it"
        assert await payouts.available(conn, account_id=who, currency="EUR") == 500
        mine = {r["id"] for r in await conn.fetch("select id from payouts where account_id = $1", who)}

        async def violations() -> list[str]:
            """The payout checks' findings about this creator (the session's database is shared)."""
            return [v.check for v in await audit.audit(conn) if v.check.startswith("payouts")
                    and any(r.get("account_id") == who or r.get("id") in mine for r in v.rows)]

        assert await violations() == []
        # The audit sees a payout whose journal does not match.
        await conn.execute("update payouts set amount = amount + 1 where id = $1", later)
        assert await violations() == ["payouts_posted"]
        await conn.execute("update payouts set amount = amount - 1 where id = $1", later)
    finally:
        await conn.close()


async def test_payouts_are_their_creator_s_alone(database_url: str, app_pool: asyncpg.Pool) -> None:
    from merci.db import Scope, scoped
    from tests import factories as f

    settings = config.Settings(database_url=database_url).derived()
    conn = await asyncpg.connect(settings.system_database_url)
    try:
        tenant = await f.merci_tenant(conn)
        owner, other = await f.person(conn, tenant, "maker"), await f.person(conn, tenant, "fan")
        await _credit(database_url, owner, 1500)
    finally:
        await conn.close()
    gauges = SystemGauges(settings.system_database_url, ttl=0, ledger_ttl=3600)

    async def pending_gauges() -> tuple[float, float]:  # a scrape, as the workers' metrics thread serves it
        families = {f.name: f for f in await asyncio.to_thread(lambda: list(gauges.collect()))}
        assert families["merci_metrics_database_up"].samples[0].value == 1
        count = next(s.value for s in families["merci_payouts"].samples if s.labels == {"status": "pending"})
        return count, families["merci_payouts_pending_oldest_seconds"].samples[0].value

    before, _ = await pending_gauges()
    async with scoped(app_pool, Scope(tenant, owner)) as c:
        mine = await payouts.request(c, tenant_id=tenant, account_id=owner, amount=None, currency="EUR",
                                     threshold=1000, idempotency_key="all", provider="dev")
        assert mine.amount == 1500
    count, oldest = await pending_gauges()
    assert count == before + 1 and oldest >= 0  # the workers' /metrics count it
    async with scoped(app_pool, Scope(tenant, other)) as c:
        assert await c.fetchval("select count(*) from payouts where account_id = $1", owner) == 0
        with pytest.raises(asyncpg.InsufficientPrivilegeError):  # nobody's request but one's own
            await c.execute("insert into payouts (tenant_id, account_id, amount, currency, provider, idempotency_key)"
                            " values ($1, $2, 5000, 'EUR', 'dev', 'theirs')", tenant, owner)
    async with scoped(app_pool, Scope(tenant, owner)) as c:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):  # only a worker settles a payout
            await c.execute("update payouts set status = 'sent' where id = $1", mine.id)


async def test_concurrent_requests_reserve_the_earnings_once(database_url: str) -> None:
    """Eight requests at once, each on its own connection, for earnings that cover one."""
    from merci.db import Scope, set_scope
    from tests import factories as f

    settings = config.Settings(database_url=database_url).derived()
    system = await asyncpg.connect(settings.system_database_url)
    tenant = await f.merci_tenant(system)
    who = await f.person(system, tenant, "maker")
    await _credit(database_url, who, 1500)
    conns = [await asyncpg.connect(settings.app_database_url) for _ in range(8)]

    async def one(c: asyncpg.Connection, i: int) -> str:
        try:
            async with c.transaction():
                await set_scope(c, Scope(tenant, who))
                await payouts.request(c, tenant_id=tenant, account_id=who, amount=1500, currency="EUR",
                                      threshold=1000, idempotency_key=f"at-once-{i}", provider="dev")
        except UserError as refused:
            return refused.code
        return "pending"

    try:
        outcomes = await asyncio.gather(*(one(c, i) for i, c in enumerate(conns)))
    finally:
        for c in conns:
            await c.close()
    try:
        assert sorted(outcomes) == ["INSUFFICIENT_EARNINGS"] * 7 + ["pending"]
        assert await system.fetchval("select count(*) from payouts where account_id = $1 and status = 'pending'",
                                     who) == 1
    finally:
        await system.close()


class AfterTheLedgerRead:
    """A connection on which another transaction (`meanwhile`) commits right after the
    first statement that reads the ledger, e.g. a worker's send of another payout: the
    moment two separate reads of earnings and reservations would see different worlds
    (earnings before the send, reservations after)."""

    def __init__(self, conn: asyncpg.Connection, meanwhile: Any) -> None:
        self.conn, self.send = conn, meanwhile

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.conn, name)
        if name not in ("execute", "fetch", "fetchrow", "fetchval"):
            return method

        async def statement(sql: str, *args: Any, **kwargs: Any) -> Any:
            result = await method(sql, *args, **kwargs)
            if self.send is not None and "entries" in sql:
                send, self.send = self.send, None
                await send()
            return result

        return statement


async def test_a_send_between_the_reads_frees_nothing_twice(database_url: str, app_pool: asyncpg.Pool) -> None:
    from merci.db import Scope, scoped
    from tests import factories as f

    settings = config.Settings(database_url=database_url).derived()
    system = await asyncpg.connect(settings.system_database_url)
    try:
        tenant = await f.merci_tenant(system)
        who = await f.person(system, tenant, "maker")
        await _credit(database_url, who, 2500)

        async def request(conn: Any, key: str) -> payouts.Payout:
            return await payouts.request(conn, tenant_id=tenant, account_id=who, amount=1500, currency="EUR",
                                         threshold=1000, idempotency_key=key, provider="dev")

        async with scoped(app_pool, Scope(tenant, who)) as c:
            first = await request(c, "first")  # 15.00 of 25.00 reserved: 10.00 left

        async def send_first() -> None:
            assert await payouts.send(system, payout_id=first.id,
                                      provider=DevPayoutProvider(env="test")) == "sent"

        with pytest.raises(UserError) as refused:
            async with scoped(app_pool, Scope(tenant, who)) as c:
                await request(AfterTheLedgerRead(c, send_first), "second")
        assert refused.value.code == "INSUFFICIENT_EARNINGS"
        assert await payouts.available(system, account_id=who, currency="EUR") == 1000
        assert await system.fetchval("select count(*) from payouts where account_id = $1 and status = 'pending'",
                                     who) == 0

        # A correction that takes earnings between the check and the insert: the insert checks again.
        await _credit(database_url, who, 500)  # 15.00 available

        async def correction() -> None:
            await _credit(database_url, who, -300)

        with pytest.raises(UserError) as refused:
            async with scoped(app_pool, Scope(tenant, who)) as c:
                await request(AfterTheLedgerRead(c, correction), "third")
        assert refused.value.code == "INSUFFICIENT_EARNINGS" and "12.00" in refused.value.message
        assert await system.fetchval("select count(*) from payouts where account_id = $1 and status = 'pending'",
                                     who) == 0
    finally:
        await system.close()
