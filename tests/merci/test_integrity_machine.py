"""Integrity under random play (issue 13): principals of two tenants (supporters,
creators, an attacker who submits, claims and subscribes, tenant admins and API keys)
act at random through the domain functions, each under the database role and scope it
would have in production (the API's merci_app with its tenant and account; the
verifier, the ingestion worker, the close and the scheduler as merci_system).

After every step: nobody owns a thing outside their verified scopes (and every thing
is the owner's its scopes name), nobody is paid a share of their own thing, every cent
is conserved, no escrow of a claimed thing holds cents (claims release it at once, and
the scheduler sweeps), and `merci audit` finds nothing. Reads check that nobody sees
another tenant's private rows, with a positive control each.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from merci import audit, clicks, close, escrow, partners, sites, subscriptions, things
from merci.clicks import Accepted
from merci.config import Settings
from merci.db import Scope, migrate, scoped
from merci.errors import UserError
from merci.urls import normalize_url
from tests import factories as f
from tests.conftest import create_database, drop_database

HOSTS = ("one.example", "two.example", "shared.example")
PATHS = ("/", "/~a/", "/~b/", "/~a/deep/")
LEAVES = ("post", "post/", "post?x=1", "../~b/post", "%7Ea/x", "~a", "")
METHODS = ("meta", "link", "well_known", None)  # None: added, never proven
PRIVATE = ("clicks", "budget_changes", "subscriptions", "ledger_accounts", "journals", "account_private",
           "api_keys", "payouts", "click_rejections", "subscription_periods", "account_flags")


@dataclass(frozen=True)
class Person:
    name: str
    tenant: int
    pk: int


@dataclass
class World:
    dsn: str
    system_dsn: str
    app_dsn: str
    tenants: list[int]
    people: list[Person]  # everyone is a funded supporter, and anyone may add sites
    admins: list[Person]


_periods = itertools.count()


@pytest.fixture(scope="module")
def world(server_url: str) -> Any:
    dsn = create_database(server_url, "merci_machine")
    try:
        asyncio.run(migrate(dsn))
        settings_ = Settings(database_url=dsn).derived()

        async def build() -> World:
            conn = await asyncpg.connect(settings_.system_database_url)
            try:
                a = await f.merci_tenant(conn)
                b = await conn.fetchval("insert into tenants (slug, name, partner_share_bps) values ('blogs-m', 'B',"
                                        " 2000) returning id")
                people = []
                for name, tenant in (("alice", a), ("bob", a), ("mallory", a), ("fan", a), ("carol", b),
                                     ("dan", b)):
                    pk = await f.supporter(conn, tenant, budget=1000, funds=1_000_000)
                    people.append(Person(name, tenant, pk))
                admins = []
                for tenant in (a, b):
                    pk = await f.person(conn, tenant, "admin")
                    await conn.execute("update account_private set is_tenant_admin = true where account_id = $1", pk)
                    admins.append(Person("admin", tenant, pk))
                return World(dsn, settings_.system_database_url, settings_.app_database_url, [a, b], people, admins)
            finally:
                await conn.close()

        yield asyncio.run(build())
    finally:
        drop_database(server_url, dsn)


class Integrity(RuleBasedStateMachine):
    world: World

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()

        async def connect() -> tuple[asyncpg.Connection, asyncpg.Pool]:
            return (await asyncpg.connect(self.world.system_dsn),
                    await asyncpg.create_pool(self.world.app_dsn, min_size=1, max_size=2))

        self.system, self.app = self.run(connect())
        # Months of its own for each run (closed months refuse clicks for good), three years
        # apart: a run closes at most one month a step.
        n = next(_periods)
        self.period = date(2100 + 3 * n, 1, 1)
        self.prefix = f"r{n}-"
        self.things: list[int] = []
        self.sites: list[int] = []
        self.closed: list[date] = []
        self.clicked = 0  # clicks stored in the open month

    def run(self, work: Any) -> Any:
        return self.loop.run_until_complete(work)

    def teardown(self) -> None:
        self.run(self.app.close())
        self.run(self.system.close())
        self.loop.close()

    def url(self, host: int, path: int, leaf: int) -> str:
        return f"https://{self.prefix}{HOSTS[host]}{PATHS[path]}{LEAVES[leaf]}"

    def as_person(self, p: Person) -> Any:
        return scoped(self.app, Scope(p.tenant, p.pk))

    def now(self, second: int) -> datetime:
        return datetime(self.period.year, self.period.month, 1, tzinfo=UTC) + timedelta(seconds=second)

    async def attempt(self, p: Person | None, tenant: int, work: Any) -> Any:
        """Run `work(conn)` as the API would for `p` (None: an API key of `tenant`); a
        refusal rolls the transaction back, as the API's does."""
        scope = Scope(tenant, p.pk if p else None)
        try:
            async with scoped(self.app, scope) as conn:
                return await work(conn)
        except UserError:
            return None

    @initialize()
    def start(self) -> None:
        pass

    # ------------------------------------------------------------------ sites

    @rule(who=st.integers(0, 5), host=st.integers(0, 2), path=st.integers(0, 3), method=st.sampled_from(METHODS))
    def add_site(self, who: int, host: int, path: int, method: str | None) -> None:
        p = self.world.people[who]
        url = self.url(host, path, 6)
        site = self.run(self.attempt(p, p.tenant, lambda c: sites.add_site(c, tenant_id=p.tenant, owner_id=p.pk,
                                                                          url=url)))
        if site is None:
            return
        self.sites.append(site)
        if method is not None:  # the verifier found this proof on the site
            self.run(sites.record(self.system, site_id=site, outcome=sites.Outcome(method, None)))

    # ------------------------------------------------------------------ things

    @rule(who=st.integers(0, 5), host=st.integers(0, 2), path=st.integers(0, 3), leaf=st.integers(0, 6))
    def submit(self, who: int, host: int, path: int, leaf: int) -> None:
        p = self.world.people[who]
        url = self.url(host, path, leaf)
        made = self.run(self.attempt(p, p.tenant, lambda c: things.submit_thing(
            c, tenant_id=p.tenant, owner_id=p.pk, url=url, title="t")))
        if made is not None:
            self.things.append(made)

    @rule(tenant=st.integers(0, 1), owner=st.integers(0, 5), host=st.integers(0, 2), path=st.integers(0, 3),
          leaf=st.integers(0, 6))
    def register_with_a_key(self, tenant: int, owner: int, host: int, path: int, leaf: int) -> None:
        """A partner's things:write key registers a page for one of its creators (a hint)."""
        t = self.world.tenants[tenant]
        hint = self.world.people[owner]
        item = partners.ThingItem(url=self.url(host, path, leaf), title="r",
                                  owner_id=hint.pk if hint.tenant == t else None)
        out = self.run(self.attempt(None, t, lambda c: partners.register_things(c, tenant_id=t, items=[item])))
        if out is not None:
            self.things.extend(i for i in out[0] if i is not None)

    @rule(who=st.integers(0, 5), pick=st.integers(0, 1000))
    def claim(self, who: int, pick: int) -> None:
        if not self.things:
            return
        p = self.world.people[who]
        thing = self.things[pick % len(self.things)]
        claimed = self.run(self.attempt(p, p.tenant, lambda c: things.claim_thing(c, owner_id=p.pk, thing_id=thing)))
        if claimed is not None:
            assert self.run(self.system.fetchval("select owner_id from things where id = $1", thing)) == p.pk

    # ------------------------------------------------------------------ clicks and subscriptions

    @rule(who=st.integers(0, 5), pick=st.integers(0, 1000), host=st.integers(0, 2), path=st.integers(0, 3),
          leaf=st.integers(0, 6), by_url=st.booleans(), second=st.integers(1, 86_400 * 27))
    def click(self, who: int, pick: int, host: int, path: int, leaf: int, by_url: bool, second: int) -> None:
        p = self.world.people[who]
        thing = None if by_url or not self.things else self.things[pick % len(self.things)]
        url = self.url(host, path, leaf) if thing is None else None
        accepted = self.run(self.attempt(p, p.tenant, lambda c: clicks.precheck(
            c, supporter_id=p.pk, tenant_id=p.tenant, thing_id=thing, url=url, idempotency_key=f.token("k"),
            currency="EUR", now=self.now(second))))
        if isinstance(accepted, Accepted):
            stored, _ = self.run(clicks.ingest(self.system, [accepted.message()]))  # the worker's batch
            self.clicked += stored

    @rule(who=st.integers(0, 5), pick=st.integers(0, 1000), months=st.sampled_from([1, 3]))
    def subscribe(self, who: int, pick: int, months: int) -> None:
        if not self.things:
            return
        p = self.world.people[who]
        thing = self.things[pick % len(self.things)]
        self.run(self.attempt(p, p.tenant, lambda c: subscriptions.subscribe(
            c, tenant_id=p.tenant, supporter_id=p.pk, thing_id=thing, months=months, period=self.period)))
        self.run(subscriptions.materialize(self.system, period=self.period))

    @rule(host=st.integers(0, 2), path=st.integers(0, 3), leaf=st.integers(0, 6), subscribe=st.booleans(),
          method=st.sampled_from(METHODS[:3]), second=st.integers(1, 86_400 * 27))
    def attacker_pays_himself(self, host: int, path: int, leaf: int, subscribe: bool, method: str,
                              second: int) -> None:
        """Mallory clicks (or subscribes to) a page nobody has proven, then proves its site."""
        mallory = self.world.people[2]
        self.click(2, 0, host, path, leaf, True, second)
        thing = self.run(self.system.fetchval("select id from things where canon = merci_canon($1)",
                                              normalize_url(self.url(host, path, leaf))))
        if thing is not None:
            self.things.append(thing)
            if subscribe:
                self.subscribe(2, len(self.things) - 1, 3)
        self.add_site(2, host, path, method)
        assert mallory.name == "mallory"

    # ------------------------------------------------------------------ money jobs

    @rule()
    def close_the_month(self) -> None:
        if not self.clicked:  # (not a precondition: what was stored is the database's to say)
            return
        self.run(subscriptions.materialize(self.system, period=self.period))
        assert self.run(close.close_inline(self.system, period=self.period, shards=2)) == "done"
        self.closed.append(self.period)
        self.clicked = 0
        self.period = date(self.period.year + self.period.month // 12, self.period.month % 12 + 1, 1)
        # Subscriptions count in the new month as soon as it starts (the scheduler's job).
        self.run(subscriptions.materialize(self.system, period=self.period))

    @rule()
    def scheduler_sweeps(self) -> None:
        self.run(escrow.release_stranded(self.system))
        for period in self.closed:
            self.run(escrow.return_due(self.system, period=period))

    # ------------------------------------------------------------------ reads

    @rule(who=st.integers(0, 7), as_key=st.booleans())
    def read_private_rows(self, who: int, as_key: bool) -> None:
        p = (self.world.people + self.world.admins)[who]
        scope = Scope(p.tenant, None if as_key else p.pk)

        async def read() -> None:
            async with scoped(self.app, scope) as conn:
                for table in PRIVATE:
                    tenants = {r[0] for r in await conn.fetch(f"select distinct tenant_id from {table}")}
                    assert tenants <= {p.tenant}, f"{table}: {p.name} of tenant {p.tenant} reads {tenants}"
                foreign = await conn.fetchval(
                    "select count(*) from entries where tenant_id <> $1 and journal_tenant_id <> $1", p.tenant)
                assert foreign == 0
                # The positive control: one's own tenant's private rows are there to be read.
                assert await conn.fetchval("select count(*) from budget_changes") > 0
                assert await conn.fetchval("select count(*) from account_private") > 0

        self.run(read())

    # ------------------------------------------------------------------ invariants

    @invariant()
    def the_ledger_is_sound(self) -> None:
        violations = self.run(audit.audit(self.system))
        assert violations == [], "\n".join(map(str, violations))
        assert self.run(audit.imbalance(self.system)) == 0

    @invariant()
    def nobody_owns_outside_their_scopes(self) -> None:
        rows = self.run(self.system.fetch(
            "select t.id, t.canon, t.owner_id from things t where t.owner_id is not null"
            " and not merci_owns(t.owner_id, t.canon)"))
        assert rows == []

    @invariant()
    def nobody_is_paid_for_their_own_thing(self) -> None:
        """Direct shares: `merci audit`'s no_own_share (above). Shares that waited in escrow
        are followed here, escrow by escrow, in journal order: a month's shares come in per
        supporter, a return takes a month's back, a refund takes the new owner's own back,
        and a release pays out exactly what is left, none of it the owner's own."""
        rows = self.run(self.system.fetch(ESCROW_FLOWS))
        pending: dict[int, dict[tuple[int, date], int]] = {}
        for r in rows:
            held = pending.setdefault(r["escrow"], {})
            if r["kind"] == "month_close":
                key = (r["supporter"], r["period"])
                held[key] = held.get(key, 0) + r["amount"]
            elif r["idem_key"].startswith("escrow_own:"):
                own = {k: v for k, v in held.items() if k[0] == r["refunded"]}
                assert sum(own.values()) == -r["amount"], (r, held)
                for k in own:
                    del held[k]
            elif r["kind"] == "escrow_return":
                month = {k: v for k, v in held.items() if k[1] == r["period"]}
                assert sum(month.values()) == -r["amount"], (r, held)
                for k in month:
                    del held[k]
            elif r["kind"] == "escrow_release":
                assert all(k[0] != r["creator"] for k in held), f"released to {r['creator']} their own: {held}"
                assert sum(held.values()) == -r["amount"], (r, held)
                held.clear()
            else:
                raise AssertionError(f"unexpected movement of escrow: {dict(r)}")


# Every journal moving an escrow account, with its part of it and who it concerns.
ESCROW_FLOWS = """
select e.ledger_account_id as escrow, j.id, j.kind, j.idem_key, j.period, sum(e.amount)::bigint as amount,
       (select sl.owner_account_id from entries x join ledger_accounts sl on sl.id = x.ledger_account_id
         where x.journal_id = j.id and sl.kind = 'supporter' and x.amount < 0 limit 1) as supporter,
       (select sl.owner_account_id from entries x join ledger_accounts sl on sl.id = x.ledger_account_id
         where x.journal_id = j.id and sl.kind = 'supporter' and x.amount > 0 limit 1) as refunded,
       (select cl.owner_account_id from entries x join ledger_accounts cl on cl.id = x.ledger_account_id
         where x.journal_id = j.id and cl.kind = 'creator' limit 1) as creator
  from entries e join ledger_accounts la on la.id = e.ledger_account_id and la.kind = 'escrow'
  join journals j on j.id = e.journal_id
 group by e.ledger_account_id, j.id
 order by e.ledger_account_id, j.id
"""


def test_integrity_under_random_play(world: World) -> None:
    Integrity.world = world
    run = Integrity.TestCase
    run.settings = settings(max_examples=20, stateful_step_count=30, deadline=None,
                            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    run().runTest()
    # The runs moved money: the machine exercised what it checks.
    async def moved() -> tuple[int, int, int]:
        conn = await asyncpg.connect(world.system_dsn)
        try:
            row = await conn.fetchrow(
                "select (select count(*) from journals where kind = 'month_close'),"
                " (select count(*) from things where owner_id is not null),"
                " (select count(*) from sites where verified_scope is not null)")
            return int(row[0]), int(row[1]), int(row[2])
        finally:
            await conn.close()

    journals, owned, proven = asyncio.run(moved())
    assert journals > 0 and owned > 0 and proven > 0

