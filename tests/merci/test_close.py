"""The month close, at the domain level: the founding story, escrow, idempotency."""

from __future__ import annotations

import json
from datetime import date

import asyncpg
import pytest

from merci import audit, close, config, escrow, months, split
from merci.budgets import balance, earnings, monthly_budget
from merci.db import migrate
from merci.errors import UserError
from merci.things import claim_thing
from tests import factories as f
from tests.conftest import create_database, drop_database


async def ledger_snapshot(conn: asyncpg.Connection) -> list[tuple[object, ...]]:
    rows = await conn.fetch(
        "select j.idem_key, la.kind, la.owner_account_id, la.thing_id, e.amount, e.thing_id as share_of"
        "  from journals j join entries e on e.journal_id = j.id join ledger_accounts la on la.id = e.ledger_account_id"
        " order by 1, 2, 3, 4, 5, 6")
    return [tuple(r) for r in rows]


async def test_founding_story(system_pool: asyncpg.Pool) -> None:
    period = date(2030, 1, 1)
    async with system_pool.acquire() as conn:
        tenant = await f.merci_tenant(conn)
        fan = await f.supporter(conn, tenant, budget=1000, funds=5000)
        owners = [await f.person(conn, tenant, "blogger") for _ in range(5)]
        blogs = [await f.thing(conn, tenant, o) for o in owners]
        for i, blog in enumerate(blogs):
            await f.click(conn, tenant, fan, blog, f"2030-01-0{i + 1}T12:00:00Z")

        assert await close.close_inline(conn, period=period, shards=4) == "done"

        assert await balance(conn, account_id=fan, currency="EUR") == 4000
        for owner in owners:
            assert await earnings(conn, account_id=owner, currency="EUR") == 180
        fee = await conn.fetchval(
            "select sum(e.amount) from journals j join entries e on e.journal_id = j.id"
            " join ledger_accounts la on la.id = e.ledger_account_id"
            " where la.kind = 'platform_fee' and j.idem_key = $1",
            f"close:{period}:{fan}")
        assert fee == 100
        assert await audit.audit(conn) == []

        before = await ledger_snapshot(conn)
        assert await close.close_inline(conn, period=period, shards=4) == "done"
        shards = await conn.fetchval("select shards from month_closes where period = $1", period)
        for shard in range(shards):
            assert await close.close_shard(conn, period=period, shard=shard) is None
        assert await ledger_snapshot(conn) == before


async def test_remainder_goes_to_earliest_clicks_and_partner_share(system_pool: asyncpg.Pool) -> None:
    period = date(2030, 2, 1)
    async with system_pool.acquire() as conn:
        partner = await conn.fetchval(
            "insert into tenants (slug, name, fee_bps, partner_share_bps) values ($1, 'P', 1000, 3000) returning id",
            f.token("p-"))
        fan = await f.supporter(conn, partner, budget=1000, funds=1000)
        owner = await f.person(conn, partner, "c")
        things = [await f.thing(conn, partner, owner) for _ in range(7)]
        # Clicked in reverse id order: the earliest clicks get the remainder cents.
        for i, t in enumerate(reversed(things)):
            await f.click(conn, partner, fan, t, f"2030-02-0{i + 1}T00:00:00Z")
        assert await close.close_inline(conn, period=period, shards=2) == "done"
        shares = dict(await conn.fetch(
            "select e.thing_id, e.amount from entries e join journals j on j.id = e.journal_id"
            " where j.idem_key = $1 and e.thing_id is not null", f"close:{period}:{fan}"))
        # fee 100 -> partner 30, platform 70; D = 900 over 7: 128 each, 4 cents left.
        assert sorted(shares.values()) == [128, 128, 128, 129, 129, 129, 129]
        assert [shares[t] for t in reversed(things)][:4] == [129] * 4
        partner_got = await conn.fetchval(
            "select sum(e.amount) from entries e join ledger_accounts la on la.id = e.ledger_account_id"
            " where la.kind = 'partner_share' and la.tenant_id = $1", partner)
        assert partner_got == 30
        assert await balance(conn, account_id=fan, currency="EUR") == 0


async def test_no_click_no_charge_and_budget_capped_by_balance(system_pool: asyncpg.Pool) -> None:
    period = date(2030, 3, 1)
    async with system_pool.acquire() as conn:
        tenant = await f.merci_tenant(conn)
        idle = await f.supporter(conn, tenant, budget=1000, funds=3000)
        poor = await f.supporter(conn, tenant, budget=2000, funds=500)
        owner = await f.person(conn, tenant, "c")
        t = await f.thing(conn, tenant, owner)
        await f.click(conn, tenant, poor, t, "2030-03-15T00:00:00Z")
        assert await close.close_inline(conn, period=period, shards=1) == "done"
        assert await balance(conn, account_id=idle, currency="EUR") == 3000
        assert await balance(conn, account_id=poor, currency="EUR") == 0
        assert await earnings(conn, account_id=owner, currency="EUR") == 450


async def test_budget_changes_at_one_instant_resolve_alike_everywhere(system_pool: asyncpg.Pool) -> None:
    """Two budget changes of one supporter at the same instant: the later one (by id) is
    the budget, for the dashboard, the month view, the projected split and the close."""
    period = date(2030, 8, 1)
    async with system_pool.acquire() as conn:
        tenant = await f.merci_tenant(conn)
        at = "2030-07-20T10:00:00Z"
        fan = await f.supporter(conn, tenant, budget=1000, funds=5000, budget_at=at)
        for amount in (2000, 500):  # 500 comes last: it is the budget, whatever the index order
            await conn.execute(
                "insert into budget_changes (tenant_id, account_id, amount, currency, created_at)"
                " values ($1, $2, $3, 'EUR', $4::text::timestamptz)", tenant, fan, amount, at)
        owner = await f.person(conn, tenant, "c")
        t = await f.thing(conn, tenant, owner)
        await f.click(conn, tenant, fan, t, "2030-08-03T00:00:00Z")

        assert await monthly_budget(conn, account_id=fan, default=300) == 500
        assert await months.budget_for(conn, account_id=fan, period=period, default=300) == 500
        projected = await split.projected(conn, period=period, supporter_id=fan, default_budget=300, currency="EUR")
        assert [r["charge"] for r in projected] == [500]
        assert await close.close_inline(conn, period=period, shards=1) == "done"
        assert await balance(conn, account_id=fan, currency="EUR") == 4500
        assert await earnings(conn, account_id=owner, currency="EUR") == 450


async def test_escrow_released_on_claim_and_returned_after_hold(system_pool: asyncpg.Pool) -> None:
    period = date(2030, 4, 1)
    async with system_pool.acquire() as conn:
        tenant = await f.merci_tenant(conn)
        fan = await f.supporter(conn, tenant, budget=1000, funds=1000)
        host = f.token("blog") + ".example"
        kept = await f.thing(conn, tenant, None, f"https://{host}/a")
        orphan = await f.thing(conn, tenant, None)
        await f.click(conn, tenant, fan, kept, "2030-04-01T00:00:00Z")
        await f.click(conn, tenant, fan, orphan, "2030-04-02T00:00:00Z")
        assert await close.close_inline(conn, period=period, shards=1) == "done"
        assert await balance(conn, account_id=fan, currency="EUR") == 0

        creator = await f.person(conn, tenant, "c")
        # Proving the site adopts what it covers, escrow included, in the same transaction.
        await conn.execute(
            "insert into sites (tenant_id, owner_id, url, host, verification_token, verified_at)"
            " values ($1, $2, $3, $4, 't', now())", tenant, creator, f"https://{host}", host)
        assert await conn.fetchval("select owner_id from things where id = $1", kept) == creator
        assert await earnings(conn, account_id=creator, currency="EUR") == 450
        assert await escrow.release(conn, thing_id=kept) == 0  # nothing left, and idempotent
        async with conn.transaction():
            with pytest.raises(UserError) as err:
                await claim_thing(conn, owner_id=creator, thing_id=kept)
        assert err.value.code == "ALREADY_CLAIMED"

        assert await escrow.return_due(conn, period=period) == 450  # only the orphan's
        assert await escrow.return_due(conn, period=period) == 0
        assert await balance(conn, account_id=fan, currency="EUR") == 450
        assert await audit.audit(conn) == []


async def test_thing_claimed_while_the_month_closes_pays_its_new_owner(system_pool: asyncpg.Pool) -> None:
    period = date(2030, 5, 1)
    async with system_pool.acquire() as conn:
        tenant = await f.merci_tenant(conn)
        fan = await f.supporter(conn, tenant, budget=1000, funds=1000)
        unclaimed = await f.thing(conn, tenant, None)
        await f.click(conn, tenant, fan, unclaimed, "2030-05-02T00:00:00Z")
        # The start makes the accounts the month will credit: here, the thing's escrow.
        await close.start(conn, period=period, shards=1, currency="EUR", default_budget=500)
        creator = await f.person(conn, tenant, "c")
        url = await conn.fetchval("select url from things where id = $1", unclaimed)
        await f.verified_site(conn, creator, url)  # adopts the thing
        # The shard finds the owner it reads now, and makes the account it lacks.
        assert await close.close_inline(conn, period=period, shards=1) == "done"
        assert await earnings(conn, account_id=creator, currency="EUR") == 900
        assert await balance(conn, account_id=fan, currency="EUR") == 0
        assert await audit.audit(conn) == []


async def test_close_resumed_across_an_upgrade_checks_older_shards_by_the_ledger(system_pool: asyncpg.Pool) -> None:
    period = date(2030, 6, 1)
    async with system_pool.acquire() as conn:
        tenant = await f.merci_tenant(conn)
        owner = await f.person(conn, tenant, "c")
        t = await f.thing(conn, tenant, owner)
        for i in range(3):
            fan = await f.supporter(conn, tenant, budget=1000, funds=1000)
            await f.click(conn, tenant, fan, t, f"2030-06-0{i + 1}T00:00:00Z")
        await close.start(conn, period=period, shards=3, currency="EUR", default_budget=500)
        await close.close_shard(conn, period=period, shard=0)
        # As a shard closed by a version that did not record its figures.
        await conn.execute("update month_close_shards set journals = null, debited = null, shares = null,"
                           " fees = null, partner = null where period = $1", period)
        assert await close.close_inline(conn, period=period, shards=3) == "done"
        summary = json.loads(await conn.fetchval("select summary::text from month_closes where period = $1", period))
        assert summary["journals"] == summary["supporters"] == 3
        assert summary["debited"] == summary["charged"] == 3000
        assert summary["shares"] + summary["fees"] + summary["partner"] == 3000


async def test_a_shard_that_fails_its_self_check_posts_nothing_and_fails_the_close(server_url: str) -> None:
    # A database of its own: a failed close stops every later close (and the audit).
    dsn = create_database(server_url, "merci_failclose")
    try:
        await migrate(dsn)
        conn = await asyncpg.connect(config.with_user(dsn, config.SYSTEM_ROLE))
        try:
            await _fail_a_shard(conn)
        finally:
            await conn.close()
    finally:
        drop_database(server_url, dsn)


async def _fail_a_shard(conn: asyncpg.Connection) -> None:
    period = date(2030, 7, 1)
    tenant = await f.merci_tenant(conn)
    owner = await f.person(conn, tenant, "c")
    t = await f.thing(conn, tenant, owner)
    fans = [await f.supporter(conn, tenant, budget=1000, funds=1000) for _ in range(2)]
    for fan in fans:
        await f.click(conn, tenant, fan, t, "2030-07-02T00:00:00Z")
    # A close journal that is not the close's own: the shard must not charge around it.
    await conn.execute("insert into journals (tenant_id, kind, idem_key, period) values ($1, 'month_close', $2, $3)",
                       tenant, f"close:{period}:{fans[0]}", period)
    assert await close.close_inline(conn, period=period, shards=1) == "failed"
    error = await conn.fetchval("select error from month_closes where period = $1", period)
    assert "shard 0" in error and "debited" in error
    assert await conn.fetchval("select count(*) from month_close_shards where period = $1", period) == 0
    assert await balance(conn, account_id=fans[1], currency="EUR") == 1000  # rolled back with the shard


async def test_the_close_waits_for_the_month_s_accepted_clicks(system_pool: asyncpg.Pool, database_url: str) -> None:
    """Clicks answered PENDING and not yet stored (in the outbox, or queued in the
    PostgreSQL broker) hold the month's close back: it starts once the workers have stored
    them, rather than freeze the month and have them refused MONTH_CLOSED after (issue 17).
    Queued clicks of another month do not."""
    period = date(2037, 5, 1)
    async with system_pool.acquire() as conn:
        tenant = await f.merci_tenant(conn)
        fan = await f.supporter(conn, tenant, budget=1000, funds=5000)
        thing = await f.thing(conn, tenant, await f.person(conn, tenant, "c"))
        await f.click(conn, tenant, fan, thing, "2037-05-02T10:00:00Z")

        def item(at: str) -> list[object]:
            return [fan, tenant, thing, None, f.token("k"), at, "click", None]

        owner = await asyncpg.connect(database_url)  # (the API writes the outbox, the broker its queue)
        outboxed = await owner.fetchval(
            "insert into click_outbox (id, tenant_id, batch, signature) values (gen_random_uuid(), $1, $2::jsonb,"
            " repeat('0', 64)) returning id", tenant, json.dumps([item("2037-06-01T00:00:00Z"),
                                                                 item("2037-05-31T23:59:59Z")]))
        queued = await owner.fetchval(
            "insert into dramatiq.queue (queue_name, message_id, state, message) values ('clicks', gen_random_uuid(),"
            " 'queued', $1::jsonb) returning message_id",
            json.dumps({"args": [[item("2037-05-15T08:00:00Z")], "sig"], "kwargs": {}, "actor_name": "x"}))
        try:
            with pytest.raises(close.ClicksQueued, match="2 accepted clicks of 2037-05 are not stored yet"):
                await close.close_inline(conn, period=period, shards=1)
            await owner.execute("delete from dramatiq.queue where message_id = $1", queued)
            with pytest.raises(close.ClicksQueued, match="1 accepted clicks of 2037-05"):
                await close.close_inline(conn, period=period, shards=1)
            assert await conn.fetchval("select count(*) from month_closes where period = $1", period) == 0
            # Its clicks stored (the row gone): the close starts. June's queued click is June's.
            await owner.execute("update click_outbox set batch = $2::jsonb where id = $1", outboxed,
                               json.dumps([item("2037-06-01T00:00:00Z")]))
            assert await close.close_inline(conn, period=period, shards=1) == "done"
        finally:
            await owner.execute("delete from click_outbox where id = $1", outboxed)
            await owner.execute("delete from dramatiq.queue where message_id = $1", queued)
            await owner.close()
