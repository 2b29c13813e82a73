"""Ownership by proof (issue 13): nobody can take money that is not theirs.

Each test is one of the issue's findings, reproduced: a creator submitting a page on
another creator's verified site, a path proving a whole host, being paid by one's own
subscription or by a URL variant of one's own page, escrow stranded by a claim that
meets the close, a claim across tenants answered NOT_FOUND, and the API role writing
owners or proofs straight into the tables.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import asyncpg
import pytest
from dramatiq.brokers.stub import StubBroker
from hypothesis import given, settings
from hypothesis import strategies as st

from merci import audit, close, escrow, scheduler, subscriptions, things
from merci.budgets import balance, earnings
from merci.clicks import precheck
from merci.config import Settings
from merci.db import Scope, scoped
from merci.errors import UserError
from merci.queue import Queue
from merci.urls import canonical_key, normalize_url
from tests import factories as f


def host() -> str:
    return f.token("h") + ".example"


async def owner_of(conn: asyncpg.Connection, url: str) -> int | None:
    found: int | None = await conn.fetchval("select owner_id from things where canon = merci_canon($1)", url)
    return found


async def refused(code: str, work: object) -> None:
    with pytest.raises(UserError) as err:
        await work  # type: ignore[misc]
    assert err.value.code == code, err.value


async def test_a_page_on_another_creators_verified_site_is_theirs(system_pool: asyncpg.Pool,
                                                                 app_pool: asyncpg.Pool) -> None:
    """Finding 1: bob submitted a URL on alice's verified site and owned it."""
    site = host()
    async with system_pool.acquire() as conn:
        tenant = await f.merci_tenant(conn)
        alice, bob = await f.person(conn, tenant, "alice"), await f.person(conn, tenant, "bob")
        await f.verified_site(conn, alice, f"https://{site}/", method="meta")  # the root page: the whole host
    async with scoped(app_pool, Scope(tenant, bob)) as conn:
        await things.submit_thing(conn, tenant_id=tenant, owner_id=bob, url=f"https://{site}/posts/next-big-post",
                                  title="Mine now?")
    async with system_pool.acquire() as conn:
        assert await owner_of(conn, f"https://{site}/posts/next-big-post") == alice
    async with scoped(app_pool, Scope(tenant, alice)) as conn:
        await refused("ALREADY_SUBMITTED", things.submit_thing(
            conn, tenant_id=tenant, owner_id=alice, url=f"https://{site}/posts/next-big-post", title="Mine"))
    # Another form of the same page is the same thing, not a second one for whoever comes first.
    async with scoped(app_pool, Scope(tenant, bob)) as conn:
        await refused("URL_TAKEN", things.submit_thing(
            conn, tenant_id=tenant, owner_id=bob, url=f"http://www.{site}/posts/next-big-post/?utm_source=x",
            title="Variant"))
    async with system_pool.acquire() as conn:
        assert await conn.fetchval("select count(*) from things where canon like $1", f"{site}/%") == 1
        # A click by URL variant lands on alice's thing.
        [variant] = await conn.fetch("select id, owner_id from things where canon = merci_canon($1)",
                                     normalize_url(f"http://{site}/posts/next-big-post/"))
        assert variant["owner_id"] == alice


async def test_a_path_proves_that_path_and_nothing_beside_it(system_pool: asyncpg.Pool,
                                                             app_pool: asyncpg.Pool) -> None:
    """Finding 2: a site at https://host/~one/ proven on that path let its owner claim ~other/."""
    shared, proven_root = host(), host()
    async with system_pool.acquire() as conn:
        tenant = await f.merci_tenant(conn)
        one, root, user = [await f.person(conn, tenant, n) for n in ("one", "root", "user")]
        await f.verified_site(conn, one, f"https://{shared}/~one/", method="meta")
        other_post = await f.thing(conn, tenant, None, f"https://{shared}/~other/post")
        # The well-known file proves the whole host, whatever path the site was added with.
        await f.verified_site(conn, root, f"https://{proven_root}/blog/", method="well_known")
        await f.verified_site(conn, user, f"https://{proven_root}/~user/", method="meta")
    async with scoped(app_pool, Scope(tenant, one)) as conn:
        await refused("NOT_VERIFIED", things.claim_thing(conn, owner_id=one, thing_id=other_post))
    async with scoped(app_pool, Scope(tenant, one)) as conn:
        # A dot segment does not climb out of the scope: this is ~other's page.
        await things.submit_thing(conn, tenant_id=tenant, owner_id=one, url=f"https://{shared}/~one/../~other/x",
                                  title="Out")
        await things.submit_thing(conn, tenant_id=tenant, owner_id=one, url=f"https://{shared}/~one%2Fy",
                                  title="Escaped")
        await things.submit_thing(conn, tenant_id=tenant, owner_id=one, url=f"http://{shared}/~one/post",
                                  title="In")
    async with system_pool.acquire() as conn:
        assert await owner_of(conn, f"https://{shared}/~other/post") is None
        assert await owner_of(conn, f"https://{shared}/~other/x") is None
        assert await owner_of(conn, f"https://{shared}/~one%2Fy") is None
        assert await owner_of(conn, f"https://{shared}/~one/post") == one  # http and https are one page
        # The longest proven scope owns; the host's owner still owns the rest of the host.
        mine = await f.thing(conn, tenant, None, f"https://{proven_root}/~user/post")
        theirs = await f.thing(conn, tenant, None, f"https://{proven_root}/about")
        assert (await owner_of(conn, f"https://{proven_root}/~user/post"),
                await owner_of(conn, f"https://{proven_root}/about")) == (user, root)
        assert await audit.audit(conn) == []
    # And the host's owner may not click their host's other pages: they are theirs by scope.
    async with scoped(app_pool, Scope(tenant, root)) as conn:
        await refused("OWN_THING", precheck(conn, supporter_id=root, tenant_id=tenant, thing_id=mine, url=None,
                                            idempotency_key="k1", currency="EUR", now=datetime.now(UTC)))
        await refused("OWN_THING", precheck(conn, supporter_id=root, tenant_id=tenant, thing_id=None,
                                            url=f"https://{proven_root}/not-yet-made", idempotency_key="k2",
                                            currency="EUR", now=datetime.now(UTC)))
    assert theirs != mine


async def test_nobody_is_paid_for_their_own_thing(system_pool: asyncpg.Pool, app_pool: asyncpg.Pool) -> None:
    """Finding 3: subscribe to (or click a URL variant of) an unclaimed thing, then claim it."""
    period, following = date(2031, 2, 1), date(2031, 3, 1)
    site = host()
    async with system_pool.acquire() as conn:
        tenant = await f.merci_tenant(conn)
        fan = await f.supporter(conn, tenant, budget=1000, funds=5000)
        creator = await f.person(conn, tenant, "c")
        others = await f.thing(conn, tenant, creator)
        variant = await f.thing(conn, tenant, None, f"https://{site}/hello-world?variant=x")
        subscribed = await f.thing(conn, tenant, None, f"https://{site}/podcast")
        await f.click(conn, tenant, fan, variant, "2031-02-03T10:00:00Z")
        await f.click(conn, tenant, fan, others, "2031-02-04T10:00:00Z")
        sub = await subscriptions.subscribe(conn, tenant_id=tenant, supporter_id=fan, thing_id=subscribed, months=3,
                                            period=period)
        # (this subscription's month: the session's database holds other tests' subscriptions)
        assert await subscriptions.materialize(conn, period=period, subscription_id=sub) == 1
        # Now the supporter proves the site: both things are theirs.
        await f.verified_site(conn, fan, f"https://{site}/")
        assert (await owner_of(conn, f"https://{site}/hello-world?variant=x"),
                await owner_of(conn, f"https://{site}/podcast")) == (fan, fan)
    async with scoped(app_pool, Scope(tenant, fan)) as conn:
        await refused("OWN_THING", subscriptions.subscribe(conn, tenant_id=tenant, supporter_id=fan,
                                                           thing_id=variant, months=1, period=period))
    async with system_pool.acquire() as conn:
        assert await close.close_inline(conn, period=period, shards=2) == "done"
        # The split is over the one thing that is not theirs: 9.00 to the creator, nothing to themselves.
        assert await earnings(conn, account_id=creator, currency="EUR") == 900
        assert await earnings(conn, account_id=fan, currency="EUR") == 0
        assert await balance(conn, account_id=fan, currency="EUR") == 4000
        # The next month of the subscription is not counted (not used, no click).
        assert await subscriptions.materialize(conn, period=following, subscription_id=sub) == 0
        assert await conn.fetchval("select months_used from subscriptions where thing_id = $1", subscribed) == 1
        assert await audit.audit(conn) == []


async def test_own_shares_waiting_in_escrow_go_back_to_the_balance(system_pool: asyncpg.Pool) -> None:
    """Click one's own pages before proving the site, let the month close (the shares wait
    in escrow), then prove it: the others' shares are earnings, one's own come back."""
    period = date(2031, 8, 1)
    site = host()
    async with system_pool.acquire() as conn:
        tenant = await f.merci_tenant(conn)
        sly = await f.supporter(conn, tenant, budget=1000, funds=5000)
        fan = await f.supporter(conn, tenant, budget=1000, funds=5000)
        page = await f.thing(conn, tenant, None, f"https://{site}/page")
        elsewhere = await f.thing(conn, tenant, await f.person(conn, tenant, "c"))
        await f.click(conn, tenant, sly, page, "2031-08-02T00:00:00Z")
        await f.click(conn, tenant, sly, elsewhere, "2031-08-03T00:00:00Z")
        await f.click(conn, tenant, fan, page, "2031-08-04T00:00:00Z")
        assert await close.close_inline(conn, period=period, shards=1) == "done"
        assert await balance(conn, account_id=sly, currency="EUR") == 4000
        await f.verified_site(conn, sly, f"https://{site}/")  # adopts the page and its 4.50 + 9.00
        assert await earnings(conn, account_id=sly, currency="EUR") == 900  # the fan's share only
        assert await balance(conn, account_id=sly, currency="EUR") == 4450  # their own 4.50 back
        assert await escrow.release(conn, thing_id=page) == 0
        assert await audit.audit(conn) == []


async def test_a_claim_across_tenants_says_already_claimed(system_pool: asyncpg.Pool,
                                                          app_pool: asyncpg.Pool) -> None:
    """Item 7: a creator of another tenant claiming a claimed thing got NOT_FOUND."""
    async with system_pool.acquire() as conn:
        tenant = await f.merci_tenant(conn)
        owner = await f.person(conn, tenant, "c")
        thing = await f.thing(conn, tenant, owner)
        other = await conn.fetchval("insert into tenants (slug, name) values ($1, 'Other') returning id",
                                    f.token("o-"))
        stranger = await f.person(conn, other, "s")
    async with scoped(app_pool, Scope(other, stranger)) as conn:
        await refused("ALREADY_CLAIMED", things.claim_thing(conn, owner_id=stranger, thing_id=thing))
    async with scoped(app_pool, Scope(other, stranger)) as conn:
        await refused("NOT_FOUND", things.claim_thing(conn, owner_id=stranger, thing_id=10**15))


async def test_escrow_never_strands_when_a_claim_meets_the_close(system_pool: asyncpg.Pool,
                                                                 app_pool: asyncpg.Pool,
                                                                 database_url: str) -> None:
    """Finding 5: the shard read a thing unclaimed, the claim and its release committed,
    then the shard posted the escrow, which stayed there for good."""
    period = date(2031, 5, 1)
    site = host()
    async with system_pool.acquire() as conn:
        tenant = await f.merci_tenant(conn)
        fan = await f.supporter(conn, tenant, budget=1000, funds=1000)
        creator = await f.person(conn, tenant, "c")
        thing = await f.thing(conn, tenant, None, f"https://{site}/post")
        await f.click(conn, tenant, fan, thing, "2031-05-02T00:00:00Z")
        await close.start(conn, period=period, shards=1, currency="EUR", default_budget=500)
    # The claim: a creator proves the site (as the verifier does) and the thing is adopted
    # with its escrow, in a transaction that stays open while the close runs.
    claimer = await asyncpg.connect(database_url)
    closer = await asyncpg.connect(Settings(database_url=database_url).derived().system_database_url)
    try:
        claim = claimer.transaction()
        await claim.start()
        await f.verified_site(claimer, creator, f"https://{site}/")
        closing = asyncio.create_task(close.close_inline(closer, period=period, shards=1))
        await asyncio.sleep(1.0)
        assert not closing.done(), "the shard must wait for the claim in flight"
        await claim.commit()
        assert await asyncio.wait_for(closing, 30) == "done"
    finally:
        await claimer.close()
        await closer.close()
    async with system_pool.acquire() as conn:
        assert await earnings(conn, account_id=creator, currency="EUR") == 900
        assert await conn.fetchval(
            "select coalesce(sum(e.amount), 0) from ledger_accounts la join entries e on e.ledger_account_id = la.id"
            " where la.kind = 'escrow' and la.thing_id = $1", thing) == 0
        assert await audit.audit(conn) == []


async def test_the_scheduler_releases_escrow_left_on_a_claimed_thing(system_pool: asyncpg.Pool,
                                                                    database_url: str) -> None:
    from merci import ledger
    from merci.money import Money

    async with system_pool.acquire() as conn:
        tenant = await f.merci_tenant(conn)
        creator = await f.person(conn, tenant, "c")
        thing = await f.thing(conn, tenant, creator)
    owner = await asyncpg.connect(database_url)  # a stranded escrow, as the close/claim race left them
    try:
        async with owner.transaction():
            held = await ledger.account_id(owner, kind="escrow", tenant_id=tenant, currency="EUR", thing_id=thing)
            outside = await ledger.account_id(owner, kind="external", tenant_id=tenant, currency="EUR")
            await ledger.post(owner, tenant_id=tenant, kind="correction", idem_key=f.token("strand:"),
                              lines=[(outside, Money(-321, "EUR")), (held, Money(321, "EUR"))])
    finally:
        await owner.close()
    async def stranded() -> list[object]:
        return [r["thing_id"] for v in await audit.audit(conn) if v.check == "claimed_escrow_released"
                for r in v.rows]

    async with system_pool.acquire() as conn:
        assert thing in await stranded()
        broker = StubBroker()
        sent = await scheduler.tick(conn, Settings(database_url=database_url).derived(), Queue(broker),
                                    datetime.now(UTC))
        assert f"{escrow.RELEASE_ACTOR} {thing}" in sent
        assert await escrow.release(conn, thing_id=thing) == 321  # what the released message's actor runs
        assert await earnings(conn, account_id=creator, currency="EUR") == 321
        assert thing not in await stranded()
        assert f"{escrow.RELEASE_ACTOR} {thing}" not in await scheduler.tick(
            conn, Settings(database_url=database_url).derived(), Queue(StubBroker()), datetime.now(UTC))


async def test_the_api_role_cannot_write_an_owner_or_a_proof(system_pool: asyncpg.Pool,
                                                            app_pool: asyncpg.Pool) -> None:
    """Finding 6, for things and sites: one SQL injection must not make anyone an owner."""
    site = host()
    async with system_pool.acquire() as conn:
        tenant = await f.merci_tenant(conn)
        alice, mallory = await f.person(conn, tenant, "alice"), await f.person(conn, tenant, "mallory")
        await f.verified_site(conn, alice, f"https://{site}/")
        hers = await f.thing(conn, tenant, alice, f"https://{site}/post")
        loose = await f.thing(conn, tenant, None)
    attacks = [
        ("update things set owner_id = $1 where id = $2", mallory, hers),
        ("update things set owner_id = $1, claimed_at = now() where id = $2", mallory, loose),
        ("update things set canon = 'x' || $1::bigint::text where id = $2", mallory, loose),
        ("insert into things (tenant_id, owner_id, url) values (1, $1, 'https://m.example/' || $2::bigint::text)",
         mallory, hers),
        ("insert into sites (tenant_id, owner_id, url, host, verification_token, verified_at)"
         " values (1, $1, 'https://" + site + "/~m' || $2::bigint::text || '/', '" + site + "', 't', now())",
         mallory, hers),
        ("update sites set verified_at = now(), verified_scope = $2::bigint::text || '/' where owner_id = $1",
         mallory, hers),
        ("select merci_release_escrow($2) where $1 > 0", mallory, loose),
        ("select merci_adopt_scope($1::bigint::text || $2::bigint::text)", mallory, hers),
    ]
    for sql, *args in attacks:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with scoped(app_pool, Scope(tenant, mallory, platform_admin=True)) as conn:
                await conn.execute(sql, *args)
    async with scoped(app_pool, Scope(tenant, mallory)) as conn:
        # What the API role may do: name a page (the database names its owner) and ask for the rule.
        made = await conn.fetchval("insert into things (tenant_id, url) values ($1, $2) returning id",
                                   tenant, f"https://{site}/mallory-was-here")
        assert await conn.fetchval("select merci_assign_thing($1)", loose) is None
    async with system_pool.acquire() as conn:
        assert await conn.fetchval("select owner_id from things where id = $1", made) == alice
        assert await conn.fetchval("select owner_id from things where id = $1", hers) == alice
        assert await conn.fetchval("select owner_id from things where id = $1", loose) is None
        assert await conn.fetchval("select count(*) from sites where owner_id = $1", mallory) == 0


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"https?://(www\.)?[a-z0-9-]{1,12}(\.[a-z0-9-]{1,8}){1,2}(:[0-9]{2,4})?"
                     r"(/[a-zA-Z0-9._~%/-]{0,16})?(\?[a-z0-9=&/?]{0,12})?", fullmatch=True))
def test_the_canonical_key_is_the_databases(database_url: str, raw: str) -> None:
    try:
        url = normalize_url(raw)
    except UserError:
        return

    async def db_key() -> str:
        conn = await asyncpg.connect(database_url)
        try:
            key: str = await conn.fetchval("select merci_canon($1)", url)
            return key
        finally:
            await conn.close()

    assert canonical_key(url) == asyncio.run(db_key())


async def test_the_migration_puts_the_data_already_here_right(server_url: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A database from before 0015: squatted things, pages in two forms, owners without
    proof, escrow stranded on a claimed thing. Migrating gives each thing to the owner its
    scopes name (flagging the squatters), keeps both forms' history, and releases the escrow."""
    from merci import db
    from tests.conftest import create_database, drop_database

    before = [(v, sql) for v, sql in db.migration_files() if v < "0015"]
    dsn = create_database(server_url, "merci_before_0015")
    try:
        monkeypatch.setattr(db, "migration_files", lambda: before)
        await db.migrate(dsn)
        monkeypatch.undo()
        conn = await asyncpg.connect(dsn)
        try:
            tenant = await f.merci_tenant(conn)
            alice, bob, carol = [await f.person(conn, tenant, n, verified=False) for n in ("alice", "bob", "carol")]

            async def thing(owner: int | None, url: str) -> int:
                found: int = await conn.fetchval(
                    "insert into things (tenant_id, owner_id, url, title, claimed_at)"
                    " values ($1, $2, $3, 't', case when $2::bigint is null then null else now() end) returning id",
                    tenant, owner, url)
                return found

            await conn.execute(
                "insert into sites (tenant_id, owner_id, url, host, verification_token, verified_at,"
                " verification_method) values ($1, $2, 'https://alice.example/', 'alice.example', 't', now(), 'meta')",
                tenant, alice)
            squatted = await thing(bob, "https://alice.example/next-big-post")  # bob, on alice's site
            hers = await thing(alice, "https://alice.example/hello")
            twin = await thing(bob, "http://alice.example/hello")  # the same page, a second thing
            unproven = await thing(carol, "https://carol.example/x")  # nobody proved carol.example
            waiting = await thing(None, "https://alice.example/later")
            # Shares that waited in its escrow (as a close before 0015 left them).
            from merci import ledger
            from merci.money import Money

            held = await ledger.account_id(conn, kind="escrow", tenant_id=tenant, currency="EUR", thing_id=waiting)
            outside = await ledger.account_id(conn, kind="external", tenant_id=tenant, currency="EUR")
            await ledger.post(conn, tenant_id=tenant, kind="correction", idem_key="held",
                              lines=[(outside, Money(-900, "EUR")), (held, Money(900, "EUR"))])
        finally:
            await conn.close()

        assert (await db.migrate(dsn))[0] == "0015_ownership"
        conn = await asyncpg.connect(dsn)
        try:
            owners = dict(await conn.fetch("select id, owner_id from things where id = any($1::bigint[])",
                                           [squatted, hers, twin, unproven, waiting]))
            assert owners == {squatted: alice, hers: alice, twin: alice, unproven: None, waiting: alice}
            flagged = {(r["account_id"], r["thing_id"]) for r in await conn.fetch(
                "select account_id, thing_id from account_flags where kind = 'squatted'")}
            assert flagged == {(bob, squatted), (bob, twin), (carol, unproven)}
            # The twin keeps its history under a key no lookup makes; the page is the first one.
            assert await conn.fetchval("select id from things where canon = 'alice.example/hello'") == hers
            assert await earnings(conn, account_id=alice, currency="EUR") == 900  # the escrow, released
            assert await audit.audit(conn) == []
        finally:
            await conn.close()
    finally:
        drop_database(server_url, dsn)
