"""Months are calendar months in UTC, whatever the database's time zone.

The embedded database takes the OS time zone, so a laptop in Berlin or New York runs
every statement in its zone. Budgets and clicks placed half an hour either side of a
UTC month boundary must count in the month UTC says: for the close, for the projected
split (the dashboard and `me { month(period:) }`), and for the directory's rankings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import psycopg
import pytest
from psycopg import sql

from merci import accounts, audit, close, config, months, search, split, subscriptions
from merci.budgets import balance
from merci.clicks import Accepted, ingest
from merci.db import Scope, migrate, set_scope
from runtime.synthetic import seed_month
from tests import factories as f
from tests.conftest import GraphQLClient, create_database, drop_database, start_api

# East of UTC a month ends early (Berlin's midnight is 23:00 UTC); west of it, late.
ZONES = ("Europe/Berlin", "America/New_York")
NOVEMBER = date(2026, 11, 1)


@dataclass
class Zoned:
    dsn: str
    zone: str


@pytest.fixture(params=ZONES)
def zoned(server_url: str, request: pytest.FixtureRequest) -> Iterator[Zoned]:
    """A database of its own whose sessions run in a zone other than UTC, as a server
    set up in that zone would (`timezone` in postgresql.conf, or the OS's)."""
    dsn = create_database(server_url, "merci_tz")
    try:
        asyncio.run(migrate(dsn))
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("alter database {} set timezone = {}").format(
                sql.Identifier(config.database_name(dsn)), sql.Literal(request.param)))
        yield Zoned(dsn, request.param)
    finally:
        drop_database(server_url, dsn)


async def connect(zoned: Zoned) -> asyncpg.Connection:
    conn = await asyncpg.connect(config.with_user(zoned.dsn, config.SYSTEM_ROLE))
    # The premise: without it the test would prove nothing.
    assert await conn.fetchval("show timezone") == zoned.zone
    return conn


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


async def click(conn: asyncpg.Connection, tenant: int, supporter: int, thing: int, when: str) -> None:
    """Through ingestion, which gives the click its month."""
    message = Accepted(supporter, tenant, thing, None, f.token("k"), at(when)).message()
    assert await ingest(conn, [message]) == (1, 0)


async def budget(conn: asyncpg.Connection, tenant: int, supporter: int, amount: int, when: str) -> None:
    await conn.execute("insert into budget_changes (tenant_id, account_id, amount, currency, created_at)"
                       " values ($1, $2, $3, 'EUR', $4)", tenant, supporter, amount, at(when))


async def posted_shares(conn: asyncpg.Connection, supporter: int) -> dict[int, int]:
    rows = await conn.fetch("select e.thing_id, e.amount from journals j join entries e on e.journal_id = j.id"
                            " where j.idem_key = $1 and e.thing_id is not null", f"close:{NOVEMBER}:{supporter}")
    return {r["thing_id"]: r["amount"] for r in rows}


MONTH = """query($period: String) { me { month(period: $period) {
  budget { amount } charge { amount } fee { amount } clicks shares { amount { amount } } } } }"""


def month_through_the_api(gql: GraphQLClient) -> dict[str, object]:
    m = gql(MONTH, {"period": f"{NOVEMBER:%Y-%m}"})["me"]["month"]
    return {"budget": m["budget"]["amount"], "charge": m["charge"]["amount"], "fee": m["fee"]["amount"],
            "clicks": m["clicks"], "shares": sorted(s["amount"]["amount"] for s in m["shares"])}


async def month_of(conn: asyncpg.Connection, supporter: int) -> dict[str, object]:
    """What `me { month(period:) }` shows: the projected split while open, the journal once closed."""
    m = await months.supporter_month(conn, supporter_id=supporter, period=NOVEMBER, default_budget=500,
                                     currency="EUR")
    return {"budget": m.budget, "charge": m.charge, "fee": m.fee, "clicks": m.clicks,
            "shares": sorted(s.amount for s in m.shares)}


# In UTC: `late`'s November budget is 3.00 over three clicks (one by subscription), 2.70
# after the fee; `early`'s is 10.00 on one click, 9.00 after the fee.
EXPECTED_LATE = {"budget": 300, "charge": 300, "fee": 30, "clicks": 3, "shares": [90, 90, 90]}
EXPECTED_EARLY = {"budget": 1000, "charge": 1000, "fee": 100, "clicks": 1, "shares": [900]}


@dataclass
class Supporters:
    late: int
    early: int
    tokens: tuple[str, str]


def test_the_close_and_the_projected_split_follow_utc_months(zoned: Zoned, tmp_path: Path) -> None:
    supporters = asyncio.run(_before_the_close(zoned))
    if zoned.zone != ZONES[0]:  # the API runs the same domain function: once is enough (seconds)
        asyncio.run(_close(zoned, supporters))
        return
    api, base = start_api(zoned.dsn, tmp_path)
    try:
        late, early = (GraphQLClient(base, token) for token in supporters.tokens)
        assert month_through_the_api(late) == EXPECTED_LATE
        assert month_through_the_api(early) == EXPECTED_EARLY
        asyncio.run(_close(zoned, supporters))
        assert month_through_the_api(late) == EXPECTED_LATE
        assert month_through_the_api(early) == EXPECTED_EARLY
    finally:
        api.stop()


async def _before_the_close(zoned: Zoned) -> Supporters:
    conn = await connect(zoned)
    try:
        tenant = await f.merci_tenant(conn)
        things = [await f.thing(conn, tenant, await f.person(conn, tenant, "c")) for _ in range(4)]
        # `late` lowered their budget at 23:30 UTC on November's last day: November's budget
        # (in Berlin it is already December there).
        late = await f.supporter(conn, tenant, budget=1000, funds=5000, budget_at="2026-10-15T12:00:00Z")
        await budget(conn, tenant, late, 300, "2026-11-30T23:30:00Z")
        await click(conn, tenant, late, things[0], "2026-11-30T23:30:00Z")
        await click(conn, tenant, late, things[1], "2026-11-01T00:30:00Z")
        await click(conn, tenant, late, things[2], "2026-12-01T00:30:00Z")  # December's
        # ... and subscribed from November: its click is at November's first instant in UTC.
        await conn.execute(
            "insert into subscriptions (tenant_id, supporter_id, thing_id, months, start_period)"
            " values ($1, $2, $3, 3, $4)", tenant, late, things[3], NOVEMBER)
        assert await subscriptions.materialize(conn, period=NOVEMBER) == 1
        # `early` lowered theirs at 00:30 UTC on December's first day: December's budget
        # (in New York it is still November there).
        early = await f.supporter(conn, tenant, budget=1000, funds=5000, budget_at="2026-10-15T12:00:00Z")
        await budget(conn, tenant, early, 250, "2026-12-01T00:30:00Z")
        await click(conn, tenant, early, things[0], "2026-11-15T12:00:00Z")
        await click(conn, tenant, early, things[1], "2026-12-01T00:30:00Z")  # December's

        periods = await conn.fetch("select supporter_id, thing_id, period from clicks order by accepted_at")
        assert [(r["supporter_id"], r["thing_id"], r["period"]) for r in periods] == [
            (late, things[3], NOVEMBER), (late, things[1], NOVEMBER), (early, things[0], NOVEMBER),
            (late, things[0], NOVEMBER),
            (late, things[2], date(2026, 12, 1)), (early, things[1], date(2026, 12, 1))]

        assert await month_of(conn, late) == EXPECTED_LATE
        assert await month_of(conn, early) == EXPECTED_EARLY

        tokens = []
        for supporter in (late, early):
            async with conn.transaction():
                await set_scope(conn, Scope(tenant))
                tokens.append(await accounts.issue_token(conn, tenant_id=tenant, account_id=supporter,
                                                         ttl=timedelta(hours=1)))
        return Supporters(late, early, (tokens[0], tokens[1]))
    finally:
        await conn.close()


async def _close(zoned: Zoned, supporters: Supporters) -> None:
    late, early = supporters.late, supporters.early
    conn = await connect(zoned)
    try:
        projected = {}
        for supporter in (late, early):
            rows = await split.projected(conn, period=NOVEMBER, supporter_id=supporter, default_budget=500,
                                         currency="EUR")
            projected[supporter] = {r["thing_id"]: r["amount"] for r in rows}
        assert sorted(projected[late].values()) == [90, 90, 90]
        assert sorted(projected[early].values()) == [900]

        assert await close.close_inline(conn, period=NOVEMBER, shards=2) == "done"
        assert await balance(conn, account_id=late, currency="EUR") == 5000 - 300
        assert await balance(conn, account_id=early, currency="EUR") == 5000 - 1000
        for supporter in (late, early):
            assert await posted_shares(conn, supporter) == projected[supporter]
        assert await month_of(conn, late) == EXPECTED_LATE
        assert await month_of(conn, early) == EXPECTED_EARLY
        assert await audit.audit(conn) == []
    finally:
        await conn.close()


async def test_rankings_count_the_last_30_days_across_a_utc_month_boundary(zoned: Zoned) -> None:
    conn = await connect(zoned)
    try:
        tenant = await f.merci_tenant(conn)
        creator = await f.person(conn, tenant, "c")
        host = f.token("site") + ".example"
        site = await conn.fetchval(
            "insert into sites (tenant_id, owner_id, url, host, verification_token, verified_at,"
            " verification_method, listed, title, description, language, category)"
            " values ($1, $2, $3, $4, 'tok', now(), 'meta', true, 'Listed', 'A listed site', 'en', 'text')"
            " returning id", tenant, creator, f"https://{host}", host)
        thing = await conn.fetchval(
            "insert into things (tenant_id, owner_id, site_id, url, title, claimed_at)"
            " values ($1, $2, $3, $4, 'post', now()) returning id", tenant, creator, site, f"https://{host}/post")
        fan = await f.supporter(conn, tenant, budget=500, funds=500)
        # October's last half hour in UTC (November already in Berlin), inside the window.
        await click(conn, tenant, fan, thing, "2026-10-31T23:30:00Z")
        now = at("2026-11-30T23:00:00Z")  # 30 days after 2026-10-31T23:00Z
        assert await search.refresh_rankings(conn, now=now) == 1
        assert await conn.fetchval("select popularity from site_search where site_id = $1", site) == 1
    finally:
        await conn.close()


async def test_a_synthetic_month_lies_within_its_utc_month(zoned: Zoned) -> None:
    """Benchmarks and fault tests seed months: each click accepted in its period, in UTC."""
    conn = await connect(zoned)
    try:
        seeded = await seed_month(conn, period=NOVEMBER, supporters=40, things=10, clicks_per_supporter=3,
                                  tenant_id=await f.merci_tenant(conn))
        outside = await conn.fetchval(
            "select count(*) from clicks where period = $1 and (accepted_at < $2 or accepted_at >= $3)",
            NOVEMBER, at("2026-11-01T00:00:00Z"), at("2026-12-01T00:00:00Z"))
        assert (seeded["clicks"], outside) == (120, 0)
        late_budgets = await conn.fetchval(
            "select count(*) from budget_changes where created_at >= $1", at("2026-11-01T00:00:00Z"))
        assert late_budgets == 0
    finally:
        await conn.close()
