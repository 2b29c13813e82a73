"""Click fraud (issue 16), scripted: a ring of fresh accounts clicking each other's
things is flagged and held out of the close, the honest supporters' shares are those of
the same month without the ring, a review before the close counts the released click
and one after it counts nothing, and `merci audit` passes. Then the other two rules (a
new account's burst, many accounts behind one address) and what each must leave alone.

On a database of its own: a close needs every earlier month closed, and the months here
are the test's."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date

import asyncpg
import pytest

from merci import audit, close, config, fraud, split
from merci.db import Scope, migrate, scoped
from merci.errors import UserError
from tests import factories as f
from tests.conftest import create_database, drop_database

QUIET, RINGED = date(2040, 1, 1), date(2040, 2, 1)
RULES = fraud.Rules()


@pytest.fixture
def dsn(server_url: str) -> Iterator[str]:
    dsn = create_database(server_url, "merci_fraud")
    try:
        asyncio.run(migrate(dsn))
        yield dsn
    finally:
        drop_database(server_url, dsn)


async def system(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(config.with_user(dsn, config.SYSTEM_ROLE))


async def born(conn: asyncpg.Connection, account: int, at: str) -> None:
    await conn.execute("update accounts set created_at = $2::text::timestamptz where id = $1", account, at)


async def shares(conn: asyncpg.Connection, period: date, supporter: int) -> list[tuple[int | None, int]]:
    """What a supporter's close journal posted: (thing, amount) of every entry but the debit."""
    rows = await conn.fetch(
        "select e.thing_id, e.amount from journals j join entries e on e.journal_id = j.id"
        " where j.idem_key = $1 and e.amount > 0 order by e.thing_id nulls first, e.amount",
        f"close:{period}:{supporter}")
    return [(r["thing_id"], r["amount"]) for r in rows]


async def charged(conn: asyncpg.Connection, period: date, supporter: int) -> int:
    return int(await conn.fetchval(
        "select coalesce(-sum(e.amount) filter (where e.amount < 0), 0) from journals j"
        " join entries e on e.journal_id = j.id where j.idem_key = $1", f"close:{period}:{supporter}"))


async def _ring_scenario(dsn: str) -> None:
    conn = await system(dsn)
    try:
        tenant = await f.merci_tenant(conn)
        honest = [await f.supporter(conn, tenant, budget=1000, funds=100_000) for _ in range(3)]
        creators = [await f.person(conn, tenant, "c") for _ in range(2)]
        things = [await f.thing(conn, tenant, c) for c in creators for _ in range(2)]
        for account in (*honest, *creators):
            await born(conn, account, "2035-01-01T00:00:00Z")

        # The honest supporters' pattern of clicks, the same in both months.
        async def honest_month(month: int) -> None:
            for i, fan in enumerate(honest):
                for j, thing in enumerate(things[: i + 2]):
                    await f.click(conn, tenant, fan, thing, f"2040-0{month}-{10 + j:02d}T1{i}:00:00Z")

        await honest_month(1)
        assert await fraud.detect(conn, period=QUIET, rules=RULES) == {
            "flagged": 0, "ring": 0, "burst": 0, "shared_address": 0}
        assert await close.close_inline(conn, period=QUIET, shards=2) == "done"

        # February: the same honest clicks, and a ring of four accounts made in January:
        # pairs clicking each other's things (r0 <-> r1, r2 <-> r3) and a circle r0 -> r2 -> r3... -> r0.
        await honest_month(2)
        ring = [await f.supporter(conn, tenant, budget=1000, funds=5_000) for _ in range(4)]
        for r in ring:
            await born(conn, r, "2040-01-20T00:00:00Z")
        ring_things = [await f.thing(conn, tenant, r) for r in ring]
        edges = [(0, 1), (1, 0), (2, 3), (3, 2), (1, 2), (2, 0)]  # 0 -> 1 -> 2 -> 0 is the circle
        for n, (a, b) in enumerate(edges):
            await f.click(conn, tenant, ring[a], ring_things[b], f"2040-02-0{n + 1}T08:00:00Z")
        # One ring account also thanks an honest creator: that click is no ring's, and counts.
        await f.click(conn, tenant, ring[3], things[0], "2040-02-08T08:00:00Z")
        # An honest supporter thanks a ring member's thing: an old account, on no circle.
        await f.click(conn, tenant, honest[0], ring_things[0], "2040-02-20T08:00:00Z")

        # The things' counts of the month, as ingestion keeps them (the directory ranks by them).
        await conn.execute("insert into thing_stats (thing_id, period, clicks) select thing_id, period, count(*)"
                           " from clicks where period = $1 and thing_id = any($2::bigint[]) group by 1, 2",
                           RINGED, ring_things)

        async def popularity() -> list[int]:
            counts = dict(await conn.fetch("select thing_id, clicks from thing_stats where period = $1"
                                           " and thing_id = any($2::bigint[])", RINGED, ring_things))
            return [counts.get(t, 0) for t in ring_things]

        assert await popularity() == [3, 1, 2, 1]
        found = await fraud.detect(conn, period=RINGED, rules=RULES)
        assert found == {"flagged": len(edges), "ring": len(edges), "burst": 0, "shared_address": 0}
        # Held clicks leave their things' counts: only the honest supporter's click of r0's thing is left.
        assert await popularity() == [1, 0, 0, 0]
        assert await fraud.detect(conn, period=RINGED, rules=RULES) == {  # idempotent
            "flagged": 0, "ring": 0, "burst": 0, "shared_address": 0}
        held = {(r["supporter_id"], r["thing_id"]) for r in await conn.fetch(
            "select supporter_id, thing_id from click_flags where period = $1 and status = 'held'", RINGED)}
        assert held == {(ring[a], ring_things[b]) for a, b in edges}

        # The dashboard's projection already leaves them out, as the close will.
        projected = await split.projected(conn, period=RINGED, supporter_id=ring[3], default_budget=500,
                                          currency="EUR")
        assert [p["thing_id"] for p in projected] == [things[0]]

        # A platform admin releases r2's click of r3's thing before the close: it counts.
        admin = await f.person(conn, tenant, "admin")
        await conn.execute("update account_private set is_platform_admin = true where account_id = $1", admin)
        released = await click_id(conn, ring[2], ring_things[3], RINGED)
        async with scoped_app(dsn, Scope(tenant, admin, platform_admin=True)) as app:
            row = await fraud.review(app, click_id=released, decision="released")
            assert (row["status"], row["reviewed_by"], row["late"]) == ("released", admin, False)
            again = await fraud.review(app, click_id=released, decision="released")  # idempotent
            assert again["reviewed_at"] == row["reviewed_at"]
            with pytest.raises(UserError) as refused:
                await fraud.review(app, click_id=released, decision="rejected")
            assert refused.value.code == "ALREADY_REVIEWED"
        assert await popularity() == [1, 0, 0, 1]  # released: back in r3's thing's count, once
        # ...and nobody else may review.
        async with scoped_app(dsn, Scope(tenant, honest[0])) as app:
            with pytest.raises(UserError) as forbidden:
                await fraud.review(app, click_id=released, decision="released")
            assert forbidden.value.code == "FORBIDDEN"
            assert await app.fetchval("select count(*) from click_flags") == 0  # nor read others' flags

        assert await close.close_inline(conn, period=RINGED, shards=3) == "done"

        # The honest supporters: exactly January's split, thing for thing, cent for cent
        # (honest[0]'s extra click of a ring member's thing aside, which is theirs to give).
        for fan in honest[1:]:
            assert await shares(conn, RINGED, fan) == await shares(conn, QUIET, fan)
            assert await charged(conn, RINGED, fan) == await charged(conn, QUIET, fan) == 1000
        paid_to = [t for t, _ in await shares(conn, RINGED, honest[0]) if t is not None]
        assert sorted(paid_to) == sorted([*things[:2], ring_things[0]])

        # The ring: held clicks got nothing. r0 and r1 clicked nothing else: not charged at all.
        for r in ring[:2]:
            assert await shares(conn, RINGED, r) == [] and await charged(conn, RINGED, r) == 0
        # r2's released click counts: its whole 9.00 (10.00 less the fee) goes to r3's thing.
        assert await shares(conn, RINGED, ring[2]) == [(None, 100), (ring_things[3], 900)]
        # r3's honest click counts alone.
        assert await shares(conn, RINGED, ring[3]) == [(None, 100), (things[0], 900)]

        # A review after the close began: recorded, counts nothing, the month stays closed.
        late = await click_id(conn, ring[0], ring_things[1], RINGED)
        async with scoped_app(dsn, Scope(tenant, admin, platform_admin=True)) as app:
            row = await fraud.review(app, click_id=late, decision="released")
            assert (row["status"], row["late"]) == ("released", True)
        assert await shares(conn, RINGED, ring[0]) == []
        assert await close.close_inline(conn, period=RINGED, shards=3) == "done"  # nothing to redo
        assert await shares(conn, RINGED, ring[0]) == []
        # A scan after the close flags nothing (its month is split already).
        assert await fraud.detect(conn, period=RINGED, rules=RULES) is None

        assert await audit.audit(conn) == []
        assert await audit.imbalance(conn) == 0
    finally:
        await conn.close()


def test_a_ring_of_fresh_accounts_is_held_out_of_the_close(dsn: str) -> None:
    asyncio.run(_ring_scenario(dsn))


async def click_id(conn: asyncpg.Connection, supporter: int, thing: int, period: date) -> int:
    found: int = await conn.fetchval(
        "select id from clicks where supporter_id = $1 and thing_id = $2 and period = $3", supporter, thing, period)
    return found


class scoped_app:
    """A merci_app transaction in a scope, on a connection of its own."""

    def __init__(self, dsn: str, scope: Scope) -> None:
        self.dsn, self.scope = dsn, scope

    async def __aenter__(self) -> asyncpg.Connection:
        self.pool = await asyncpg.create_pool(config.with_user(self.dsn, config.APP_ROLE), min_size=1, max_size=1)
        self.cm = scoped(self.pool, self.scope)
        conn: asyncpg.Connection = await self.cm.__aenter__()
        return conn

    async def __aexit__(self, *exc: object) -> None:
        await self.cm.__aexit__(*exc)
        await self.pool.close()


async def _bursts_and_addresses(dsn: str) -> None:
    conn = await system(dsn)
    try:
        tenant = await f.merci_tenant(conn)
        period = date(2040, 3, 1)
        creator = await f.person(conn, tenant, "c")
        await born(conn, creator, "2035-01-01T00:00:00Z")
        things = [await f.thing(conn, tenant, creator) for _ in range(25)]
        # A burst: an account made on March 2nd clicks 20 things within the hour.
        eager = await f.supporter(conn, tenant, budget=1000, funds=5_000)
        await born(conn, eager, "2040-03-02T00:00:00Z")
        for i, thing in enumerate(things[:20]):
            await f.click(conn, tenant, eager, thing, f"2040-03-02T10:{i * 2:02d}:00Z")
        # Not a burst: an old account doing the same, and a new one clicking 19 in an hour.
        keen = await f.supporter(conn, tenant, budget=1000, funds=5_000)
        await born(conn, keen, "2035-01-01T00:00:00Z")
        calm = await f.supporter(conn, tenant, budget=1000, funds=5_000)
        await born(conn, calm, "2040-03-02T00:00:00Z")
        for i, thing in enumerate(things[:20]):
            await f.click(conn, tenant, keen, thing, f"2040-03-02T10:{i * 2:02d}:00Z")
            if i < 19:
                await f.click(conn, tenant, calm, thing, f"2040-03-02T10:{i * 3:02d}:00Z")
        # One address: five accounts (old ones) clicking the creator's things from it;
        # four from another address are not enough.
        crowd = [await f.supporter(conn, tenant, budget=1000, funds=5_000) for _ in range(9)]
        for n, fan in enumerate(crowd):
            await born(conn, fan, "2035-01-01T00:00:00Z")
            await f.click(conn, tenant, fan, things[20 + n % 5], "2040-03-05T10:00:00Z")
            address = "1.2.3.4" if n < 5 else "5.6.7.8"
            await conn.execute("update clicks set client_hash = $2 where supporter_id = $1",
                               fan, fraud_hash(address))
        found = await fraud.detect(conn, period=period, rules=RULES)
        assert found == {"flagged": 25, "ring": 0, "burst": 20, "shared_address": 5}
        flagged = {r["supporter_id"] for r in await conn.fetch("select supporter_id from click_flags")}
        assert flagged == {eager, *crowd[:5]}
        assert await close.close_inline(conn, period=period, shards=2) == "done"
        assert await charged(conn, period, eager) == 0  # every click held: not charged
        assert await charged(conn, period, keen) == await charged(conn, period, calm) == 1000
        assert await audit.audit(conn) == []
    finally:
        await conn.close()


def fraud_hash(address: str) -> str:
    from merci.clicks import client_hash

    return client_hash(address, "test-secret")


def test_bursts_from_new_accounts_and_many_accounts_behind_one_address(dsn: str) -> None:
    asyncio.run(_bursts_and_addresses(dsn))


async def _screened_at_start(dsn: str) -> None:
    """The worker's close scans its month under the month's lock: a ring that clicked
    after the last scheduled scan is held all the same."""
    conn = await system(dsn)
    try:
        tenant = await f.merci_tenant(conn)
        period = date(2040, 4, 1)
        a = await f.supporter(conn, tenant, budget=1000, funds=5_000)
        b = await f.supporter(conn, tenant, budget=1000, funds=5_000)
        for r in (a, b):
            await born(conn, r, "2040-04-01T00:00:00Z")
        ta, tb = await f.thing(conn, tenant, a), await f.thing(conn, tenant, b)
        await f.click(conn, tenant, a, tb, "2040-04-02T10:00:00Z")
        await f.click(conn, tenant, b, ta, "2040-04-02T11:00:00Z")
        await close.start(conn, period=period, shards=2, currency="EUR", default_budget=500,
                          screen=fraud.Rules(fresh_days=3))
        assert await conn.fetchval("select count(*) from click_flags where period = $1", period) == 2
        assert await close.close_inline(conn, period=period, shards=2) == "done"
        assert await charged(conn, period, a) == await charged(conn, period, b) == 0
        assert await audit.audit(conn) == []
    finally:
        await conn.close()


def test_the_close_screens_its_month_at_its_start(dsn: str) -> None:
    asyncio.run(_screened_at_start(dsn))
