"""Property-based tests of the month close over random months: supporters,
budgets, balances, clicks, subscriptions, partner tenants, unclaimed things and
claims. Every cent is conserved, shares differ by at most a cent within a
supporter's month, and the ledger equals an independent model of the rules."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from merci import audit, close, escrow, subscriptions
from merci.budgets import earnings
from merci.config import Settings
from tests import factories as f

_periods = itertools.count()


def next_test_period() -> date:
    i = next(_periods)
    return date(2100 + i // 12, i % 12 + 1, 1)


@dataclass
class Supporter:
    fee_bps: int
    partner_bps: int
    budget: int | None
    funds: int
    clicks: list[tuple[int, int]]  # (thing index, second of the month)
    subscribed: list[int]  # thing indexes


supporters_st = st.lists(
    st.builds(
        Supporter,
        fee_bps=st.sampled_from([0, 1000, 1000, 1500, 5000]),
        partner_bps=st.sampled_from([0, 3000, 10000]),
        budget=st.one_of(st.none(), st.integers(200, 5000)),
        funds=st.integers(0, 6000),
        clicks=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3600)), max_size=6),
        subscribed=st.lists(st.integers(0, 5), max_size=2, unique=True),
    ),
    min_size=1, max_size=6,
)
owners_st = st.lists(st.booleans(), min_size=6, max_size=6)  # True: claimed thing
claims_st = st.lists(st.booleans(), min_size=6, max_size=6)  # claim an unclaimed thing after the close


def model(sups: list[Supporter], owned: list[bool], default_budget: int) -> dict[int, dict[str, object]]:
    """The rules of DESIGN.md, written independently of the SQL."""
    out: dict[int, dict[str, object]] = {}
    for i, s in enumerate(sups):
        first_seen: dict[int, int] = {}
        for thing, second in s.clicks:
            first_seen.setdefault(thing, second + 1)  # a second click on a thing is refused
        for thing in s.subscribed:
            first_seen.setdefault(thing, 0)  # subscription clicks stand at the month's start
        if not first_seen:
            continue
        charge = min(s.budget if s.budget is not None else default_budget, max(s.funds, 0))
        if charge == 0:
            continue
        fee = charge * s.fee_bps // 10000
        partner = fee * s.partner_bps // 10000
        order = sorted(first_seen, key=lambda t: (first_seen[t], t))
        d, n = charge - fee, len(order)
        shares = {t: d // n + (1 if rank < d % n else 0) for rank, t in enumerate(order)}
        out[i] = {"charge": charge, "fee": fee, "partner": partner, "shares": shares}
    return out


async def scenario(dsn: str, sups: list[Supporter], owned: list[bool], claims: list[bool]) -> None:
    period = next_test_period()
    start = datetime(period.year, period.month, 1, tzinfo=UTC)
    default_budget = 500
    conn = await asyncpg.connect(dsn)
    try:
        merci = await f.merci_tenant(conn)
        creators = [await f.person(conn, merci, "c") for _ in range(6)]
        things = [await f.thing(conn, merci, creators[i] if owned[i] else None) for i in range(6)]
        # Things are created with ids in index order, so "lower thing id" = lower index.
        ids = []
        for s in sups:
            tenant = merci
            if s.fee_bps != 1000 or s.partner_bps:
                tenant = await conn.fetchval(
                    "insert into tenants (slug, name, fee_bps, partner_share_bps) values ($1, 't', $2, $3)"
                    " returning id", f.token("prop-"), s.fee_bps, s.partner_bps)
            sid = await f.supporter(conn, tenant, budget=s.budget, funds=s.funds,
                                    budget_at=(start - timedelta(days=1)).isoformat())
            ids.append((sid, tenant))
            seen = set()
            for thing, second in s.clicks:
                if thing in seen:
                    continue
                seen.add(thing)
                await f.click(conn, tenant, sid, things[thing], (start + timedelta(seconds=second + 1)).isoformat())
            for thing in s.subscribed:
                await subscriptions.subscribe(conn, tenant_id=tenant, supporter_id=sid, thing_id=things[thing],
                                              months=1, period=period)

        assert await close.close_inline(conn, period=period, shards=3, default_budget=default_budget) == "done"
        first = await _period_ledger(conn, period)
        assert await close.close_inline(conn, period=period, shards=3, default_budget=default_budget) == "done"
        assert await _period_ledger(conn, period) == first  # re-running changes nothing

        expected = model(sups, owned, default_budget)
        for i, (sid, _tenant) in enumerate(ids):
            rows = [r for r in first if r[0] == f"close:{period.isoformat()}:{sid}"]
            if i not in expected:
                assert rows == []  # no click (or no means): not charged
                continue
            e = expected[i]
            assert -sum(r[4] for r in rows if r[1] == "supporter") == e["charge"]
            shares = {r[5]: r[4] for r in rows if r[5] is not None}
            want = {things[t]: a for t, a in e["shares"].items() if a > 0}  # type: ignore[attr-defined]
            assert shares == want
            if shares:
                assert max(shares.values()) - min(shares.values()) <= 1
            assert sum(r[4] for r in rows) == 0
            assert sum(r[4] for r in rows if r[1] == "partner_share") == e["partner"]
            assert sum(r[4] for r in rows if r[1] == "platform_fee") == e["fee"] - e["partner"]  # type: ignore[operator]

        # Claims release escrow to the claimer; the rest returns to supporters after the hold.
        escrowed = {t: sum(r[4] for r in first if r[5] == things[t] and r[1] == "escrow") for t in range(6)}
        for t in range(6):
            if not owned[t] and claims[t]:
                # Proving a site that covers it adopts the thing and releases its escrow at once.
                url = await conn.fetchval("select url from things where id = $1", things[t])
                before = await earnings(conn, account_id=creators[t], currency="EUR")
                await f.verified_site(conn, creators[t], url)
                assert await earnings(conn, account_id=creators[t], currency="EUR") - before == escrowed[t]
                assert await escrow.release(conn, thing_id=things[t]) == 0
        returned = await escrow.return_due(conn, period=period)
        assert returned == sum(a for t, a in escrowed.items() if not owned[t] and not claims[t])
        assert await audit.audit(conn) == []
    finally:
        await conn.close()


async def _period_ledger(conn: asyncpg.Connection, period: date) -> list[tuple[object, ...]]:
    rows = await conn.fetch(
        "select j.idem_key, la.kind, la.owner_account_id, la.thing_id, e.amount, e.thing_id"
        "  from journals j join entries e on e.journal_id = j.id join ledger_accounts la on la.id = e.ledger_account_id"
        " where j.kind = 'month_close' and j.period = $1 order by 1, 2, 3, 4, 5, 6", period)
    return [tuple(r) for r in rows]


@pytest.fixture(scope="session")
def settings_for_properties(settings: Settings) -> Settings:
    return settings


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sups=supporters_st, owned=owners_st, claims=claims_st)
def test_random_months_conserve_every_cent(sups: list[Supporter], owned: list[bool], claims: list[bool],
                                           settings_for_properties: Settings) -> None:
    asyncio.run(scenario(settings_for_properties.system_database_url, sups, owned, claims))
