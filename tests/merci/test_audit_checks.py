"""`merci audit` fails on each kind of corruption it claims to catch.

A sound ledger (top-ups, clicks, two closed months, escrow held and escrow returned, a
sent and a pending payout) is built once and audited clean. Then, for every check in
merci.audit.CHECKS, each corruption in CORRUPTIONS is made as the owner role in a
transaction of its own, the audit runs in it as merci_system, and the transaction is
rolled back: a copy of the sound ledger that lives as long as one audit (and costs
milliseconds where a copied database costs a second). The audit must report that
check, and no other than those the corruption necessarily trips too. `merci audit`
itself runs once, on a copy of the database (`create database ... template`).

Where the schema itself refuses a corruption (the entries check, a unique constraint),
the copy goes around it first: the audit is the last line, and must hold on its own.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

import asyncpg
import psycopg
import pytest
from psycopg import sql

from merci import audit, close, config, disputes, escrow, payouts, refunds, topups
from merci.db import migrate
from merci.payments import DevPayoutProvider
from tests import factories as f
from tests.conftest import ROOT, create_database, drop_database, service_env

JANUARY, FEBRUARY, MARCH = date(2030, 1, 1), date(2030, 2, 1), date(2030, 3, 1)


@dataclass(frozen=True)
class World:
    """The sound ledger's ids, for the corruptions to aim at."""

    tenant: int
    fan_a: int
    fan_b: int
    creator: int
    owned: tuple[int, int]
    unclaimed: int
    accounts: dict[str, int]  # a, b (supporters), creator, external, fee, escrow
    topup_a: int  # a journal
    close_a: int  # a's close journal of January
    payout_sent: int
    payout_pending: int
    card_topup: int  # a Stripe top-up, credited, its fee recorded
    refund_sent: int  # a refund of part of it
    dispute_open: str  # a dispute that froze a supporter's money


# ------------------------------------------------------------------ the sound ledger


async def build(conn: asyncpg.Connection) -> World:
    tenant = await f.merci_tenant(conn)
    fan_a = await f.supporter(conn, tenant, budget=1000, funds=5000)
    fan_b = await f.supporter(conn, tenant, budget=1000, funds=5000)
    creator = await f.person(conn, tenant, "c")
    t1, t2 = await f.thing(conn, tenant, creator), await f.thing(conn, tenant, creator)
    unclaimed = await f.thing(conn, tenant, None)
    # January: a's 9.00 in thirds (one third to escrow), b's on one thing.
    for fan, thing, day in ((fan_a, t1, 2), (fan_a, t2, 3), (fan_a, unclaimed, 4), (fan_b, t1, 5)):
        await f.click(conn, tenant, fan, thing, f"2030-01-0{day}T12:00:00Z")
    assert await close.close_inline(conn, period=JANUARY, shards=2) == "done"
    assert await escrow.return_due(conn, period=JANUARY) == 300  # the hold is over: back to a
    # February: a's whole share waits in escrow (a's click of t1 is held for review: no share).
    await f.click(conn, tenant, fan_a, unclaimed, "2030-02-02T12:00:00Z")
    await f.click(conn, tenant, fan_b, t2, "2030-02-03T12:00:00Z")
    await f.click(conn, tenant, fan_a, t1, "2030-02-04T12:00:00Z")
    await flag_click(conn, fan_a, t1, FEBRUARY)
    assert await close.close_inline(conn, period=FEBRUARY, shards=1) == "done"
    # The creator earned 3 x 3.00 + 2 x 9.00: one payout sent, one pending.
    sent = await payouts.request(conn, tenant_id=tenant, account_id=creator, amount=1000, currency="EUR",
                                 threshold=1000, idempotency_key="first", provider="dev")
    assert await payouts.send(conn, payout_id=sent.id, provider=DevPayoutProvider(env="test")) == "sent"
    pending = await payouts.request(conn, tenant_id=tenant, account_id=creator, amount=1000, currency="EUR",
                                    threshold=1000, idempotency_key="second", provider="dev")

    async def account(kind: str, owner: int | None = None, thing: int | None = None) -> int:
        found: int = await conn.fetchval(
            "select id from ledger_accounts where kind = $1 and owner_account_id is not distinct from $2"
            " and thing_id is not distinct from $3 and currency = 'EUR'", kind, owner, thing)
        return found

    # Cards (issue 19): a top-up paid through Stripe with its fee, a refund of part of it
    # and one Stripe refused (reversed); another supporter's payment disputed, one open
    # (frozen) and one lost (the platform's loss).
    payer = await f.person(conn, tenant, "payer")
    card = await card_topup(conn, tenant, payer, 2000, "pi_audit_payer", fee=55)
    refund_sent = await refunds.request(conn, tenant_id=tenant, account_id=payer, topup_id=card, amount=500,
                                        idempotency_key="sent")
    assert await refunds.send(conn, refund_id=refund_sent.id, stripe=_Refunding()) == "succeeded"  # type: ignore[arg-type]
    refused = await refunds.request(conn, tenant_id=tenant, account_id=payer, topup_id=card, amount=300,
                                    idempotency_key="refused")
    assert await refunds.send(conn, refund_id=refused.id, stripe=None) == "failed"
    disputed = await f.person(conn, tenant, "disputed")
    await card_topup(conn, tenant, disputed, 1000, "pi_audit_open", fee=40)
    await card_topup(conn, tenant, disputed, 800, "pi_audit_lost", fee=37)
    await disputes.opened(conn, {"id": "dp_audit_open", "payment_intent": "pi_audit_open", "amount": 1000,
                                 "currency": "eur"})
    assert await disputes.closed(conn, {"id": "dp_audit_lost", "payment_intent": "pi_audit_lost", "amount": 800,
                                        "currency": "eur", "status": "lost"}) == "dispute lost"

    accounts = {"a": await account("supporter", fan_a), "b": await account("supporter", fan_b),
                "creator": await account("creator", creator), "external": await account("external"),
                "fee": await account("platform_fee"), "escrow": await account("escrow", thing=unclaimed),
                "provider_fee": await account("provider_fee"), "platform_cost": await account("platform_cost")}
    return World(
        tenant, fan_a, fan_b, creator, (t1, t2), unclaimed, accounts,
        topup_a=await conn.fetchval(
            "select distinct e.journal_id from entries e join journals j on j.id = e.journal_id"
            " where j.kind = 'topup' and e.ledger_account_id = $1", accounts["a"]),
        close_a=await conn.fetchval("select id from journals where idem_key = $1", f"close:{JANUARY}:{fan_a}"),
        payout_sent=sent.id, payout_pending=pending.id, card_topup=card, refund_sent=refund_sent.id,
        dispute_open="dp_audit_open",
    )


class _Refunding:
    """Stripe, taking a refund."""

    async def create_refund(self, params: dict[str, object], *, key: str) -> dict[str, object]:
        return {"id": f"re_{key}", "status": "succeeded"}


async def card_topup(conn: asyncpg.Connection, tenant: int, account: int, amount: int, payment: str, *,
                     fee: int) -> int:
    """A Stripe top-up as its webhook credits it (merci.stripe_events)."""
    topup: int = await conn.fetchval(
        "insert into topups (tenant_id, account_id, amount, currency, provider, idempotency_key, status,"
        " checkout_session_id) values ($1, $2, $3, 'EUR', 'stripe', $4, 'open', $5) returning id",
        tenant, account, amount, payment, f"cs_{payment}")
    assert await topups.credit(conn, topup_id=topup, amount=amount, currency="eur", payment_intent=payment,
                               session_id=f"cs_{payment}") == "credited"
    assert await topups.record_fee(conn, topup_id=topup, fee=fee)
    return topup


async def flag_click(conn: asyncpg.Connection, supporter: int, thing: int, period: date) -> None:
    """Held for review (merci.fraud), as detection would hold it."""
    await conn.execute(
        "insert into click_flags (click_id, tenant_id, period, supporter_id, thing_id, accepted_at, reasons)"
        " select id, tenant_id, period, supporter_id, thing_id, accepted_at, array['ring'] from clicks"
        " where supporter_id = $1 and thing_id = $2 and period = $3", supporter, thing, period)


@dataclass(frozen=True)
class Sound:
    server: str
    dsn: str
    world: World


@pytest.fixture(scope="module")
def sound(server_url: str) -> Iterator[Sound]:
    dsn = create_database(server_url, "merci_audit_sound")
    try:
        asyncio.run(migrate(dsn))

        async def run() -> World:
            conn = await asyncpg.connect(config.with_user(dsn, config.SYSTEM_ROLE))
            try:
                return await build(conn)
            finally:
                await conn.close()

        world = asyncio.run(run())
        assert asyncio.run(audit_sound(dsn)) == []
        yield Sound(server_url, dsn, world)
    finally:
        drop_database(server_url, dsn)


@contextmanager
def copy_of(sound: Sound) -> Iterator[str]:
    """A database of its own, holding what the sound one holds (no session may be open on it)."""
    dsn = config.with_database(sound.dsn, f"merci_audit_copy_{secrets.token_hex(4)}")
    with psycopg.connect(sound.server, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {} template {}").format(
            sql.Identifier(config.database_name(dsn)), sql.Identifier(config.database_name(sound.dsn))))
    try:
        yield dsn
    finally:
        drop_database(sound.server, dsn)


# ------------------------------------------------------------------ corruptions


async def post_raw(conn: asyncpg.Connection, w: World, kind: str, lines: list[Line], *,
                   period: date | None = None) -> int:
    """A journal and its entries written straight into the tables, in one statement (the
    entries check, when on, sees them whole)."""
    journal: int = await conn.fetchval(
        "insert into journals (tenant_id, kind, idem_key, period) values ($1, $2, $3, $4) returning id",
        w.tenant, kind, f.token("corrupt:"), period)
    await add_entries(conn, w, journal, lines)
    return journal


async def add_entries(conn: asyncpg.Connection, w: World, journal: int, lines: list[Line]) -> None:
    await conn.execute(
        "insert into entries (journal_id, ledger_account_id, tenant_id, amount, currency, thing_id,"
        " journal_tenant_id)"
        " select $1, x.account, coalesce(x.tenant, $2), x.amount, x.currency, x.thing, coalesce(x.journal_tenant, $2)"
        "   from unnest($3::bigint[], $4::bigint[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[])"
        "     as x(account, amount, currency, thing, tenant, journal_tenant)",
        journal, w.tenant, [x.account for x in lines], [x.amount for x in lines], [x.currency for x in lines],
        [x.thing for x in lines], [x.tenant for x in lines], [x.journal_tenant for x in lines])


@dataclass(frozen=True)
class Line:
    account: int
    amount: int
    currency: str = "EUR"
    thing: int | None = None
    tenant: int | None = None  # the entry's tenant (None: the world's)
    journal_tenant: int | None = None  # the journal's tenant it carries (None: the world's)


async def without(conn: asyncpg.Connection, table: str, trigger: str) -> None:
    """Switch a guard of the schema off, in this copy only."""
    await conn.execute(sql.SQL("alter table {} disable trigger {}").format(
        sql.Identifier(table), sql.Identifier(trigger)).as_string())


async def other_tenant(conn: asyncpg.Connection) -> int:
    found: int = await conn.fetchval("insert into tenants (slug, name) values ($1, 'Other') returning id",
                                     f.token("other-"))
    return found


async def unbalanced_entry(conn: asyncpg.Connection, w: World) -> None:
    await without(conn, "entries", "entries_valid")
    await add_entries(conn, w, w.topup_a, [Line(w.accounts["a"], 1)])


async def balanced_across_currencies(conn: asyncpg.Connection, w: World) -> None:
    await without(conn, "entries", "entries_valid")
    usd = await conn.fetchval(
        "insert into ledger_accounts (kind, tenant_id, currency, owner_account_id) values ('supporter', $1, 'USD', $2)"
        " returning id", w.tenant, w.fan_a)
    await post_raw(conn, w, "correction", [Line(w.accounts["external"], -100), Line(usd, 100, "USD")])


async def empty_journal(conn: asyncpg.Connection, w: World) -> None:
    await post_raw(conn, w, "correction", [])


async def overdraft(conn: asyncpg.Connection, w: World) -> None:
    # Balanced, so the schema takes it; but it overdraws a supporter.
    await post_raw(conn, w, "correction", [Line(w.accounts["a"], -10_000), Line(w.accounts["creator"], 10_000)])


async def entries_in_another_currency(conn: asyncpg.Connection, w: World) -> None:
    await without(conn, "entries", "entries_valid")
    await post_raw(conn, w, "correction", [Line(w.accounts["external"], -100, "USD"),
                                          Line(w.accounts["a"], 100, "USD")])


async def entries_of_another_tenant(conn: asyncpg.Connection, w: World) -> None:
    await without(conn, "entries", "entries_valid")
    other = await other_tenant(conn)
    await post_raw(conn, w, "correction", [Line(w.accounts["external"], -100, tenant=other),
                                          Line(w.accounts["a"], 100, tenant=other)])


async def entries_naming_another_journal_tenant(conn: asyncpg.Connection, w: World) -> None:
    await without(conn, "entries", "entries_valid")
    other = await other_tenant(conn)
    await post_raw(conn, w, "correction", [Line(w.accounts["external"], -100, journal_tenant=other),
                                          Line(w.accounts["a"], 100, journal_tenant=other)])


async def share_of_a_missing_thing(conn: asyncpg.Connection, w: World) -> None:
    # The entries check does not look at thing_id (the close writes millions): only the audit does.
    await post_raw(conn, w, "correction", [Line(w.accounts["external"], -100),
                                          Line(w.accounts["creator"], 100, thing=10**12)])


async def close_journal_out_of_balance(conn: asyncpg.Connection, w: World) -> None:
    await without(conn, "entries", "entries_valid")
    await add_entries(conn, w, w.close_a, [Line(w.accounts["fee"], 1)])


async def second_close_journal(conn: asyncpg.Connection, w: World) -> None:
    await post_raw(conn, w, "month_close", [Line(w.accounts["b"], -100), Line(w.accounts["fee"], 100)],
                   period=JANUARY)


async def unequal_shares(conn: asyncpg.Connection, w: World) -> None:
    t1, t2 = w.owned
    await post_raw(conn, w, "month_close", [Line(w.accounts["a"], -400), Line(w.accounts["creator"], 100, thing=t1),
                                           Line(w.accounts["creator"], 300, thing=t2)], period=MARCH)


async def duplicate_click(conn: asyncpg.Connection, w: World) -> None:
    await conn.execute("alter table clicks drop constraint clicks_supporter_id_thing_id_period_key")
    await conn.execute(
        "insert into clicks (tenant_id, supporter_id, thing_id, period, accepted_at, idempotency_key)"
        " select tenant_id, supporter_id, thing_id, period, accepted_at, 'again' from clicks"
        " where supporter_id = $1 and thing_id = $2 and period = $3", w.fan_b, w.owned[0], JANUARY)


async def shard_missing(conn: asyncpg.Connection, w: World) -> None:
    await conn.execute("delete from month_close_shards where period = $1 and shard = 1", JANUARY)


async def failed_close(conn: asyncpg.Connection, w: World) -> None:
    await conn.execute("update month_closes set status = 'failed', error = 'shard 0: debited 1 but the split"
                       " charged 2' where period = $1", FEBRUARY)


async def payout_amount_not_moved(conn: asyncpg.Connection, w: World) -> None:
    await conn.execute("update payouts set amount = amount + 1 where id = $1", w.payout_sent)


async def payout_journal_elsewhere(conn: asyncpg.Connection, w: World) -> None:
    await conn.execute("update payouts set journal_id = $2 where id = $1", w.payout_sent, w.topup_a)


async def pending_beyond_earnings(conn: asyncpg.Connection, w: World) -> None:
    await conn.execute(
        "insert into payouts (tenant_id, account_id, amount, currency, provider, idempotency_key)"
        " values ($1, $2, 100000, 'EUR', 'dev', 'too-much')", w.tenant, w.creator)


async def escrow_left_on_a_claimed_thing(conn: asyncpg.Connection, w: World) -> None:
    held = await conn.fetchval(
        "insert into ledger_accounts (kind, tenant_id, currency, thing_id) values ('escrow', $1, 'EUR', $2)"
        " returning id", w.tenant, w.owned[0])
    await post_raw(conn, w, "correction", [Line(w.accounts["external"], -100), Line(held, 100)])


async def owned_without_proof(conn: asyncpg.Connection, w: World) -> None:
    await without(conn, "things", "things_ownership")
    await conn.execute("update things set owner_id = $1 where id = $2", w.fan_b, w.owned[0])


async def paid_for_own_thing(conn: asyncpg.Connection, w: World) -> None:
    own = await conn.fetchval(
        "insert into ledger_accounts (kind, tenant_id, currency, owner_account_id) values ('creator', $1, 'EUR', $2)"
        " returning id", w.tenant, w.fan_a)
    await post_raw(conn, w, "month_close", [Line(w.accounts["a"], -100), Line(own, 100, thing=w.owned[0])],
                   period=MARCH)


async def paid_while_held(conn: asyncpg.Connection, w: World) -> None:
    await flag_click(conn, w.fan_a, w.owned[0], JANUARY)  # a's January click of t1 was paid


def misdirected(kind: str, source: str, target: str) -> Callable[[asyncpg.Connection, World], Awaitable[None]]:
    """A journal of `kind` moving 1.00 from the world's account `source` to `target`."""

    async def corrupt(conn: asyncpg.Connection, w: World) -> None:
        await post_raw(conn, w, kind, [Line(w.accounts[source], -100), Line(w.accounts[target], 100)])

    return corrupt


async def topup_credited_another_amount(conn: asyncpg.Connection, w: World) -> None:
    await conn.execute("update topups set amount = amount + 1 where id = $1", w.card_topup)


async def fee_not_the_one_posted(conn: asyncpg.Connection, w: World) -> None:
    await conn.execute("update topups set fee = fee + 1 where id = $1", w.card_topup)


async def refund_of_another_amount(conn: asyncpg.Connection, w: World) -> None:
    await conn.execute("update refunds set amount = amount + 1 where id = $1", w.refund_sent)


async def frozen_not_what_disputes_hold(conn: asyncpg.Connection, w: World) -> None:
    await conn.execute("update disputes set frozen = frozen + 1 where id = $1", w.dispute_open)


@dataclass(frozen=True)
class Corruption:
    what: str
    corrupt: Callable[[asyncpg.Connection, World], Awaitable[None]]
    # Other checks the same corruption necessarily trips (say why).
    also: frozenset[str] = field(default_factory=frozenset)


# Every check in merci.audit.CHECKS needs at least one case here (test_every_check_can_fail
# fails for a check without one): a new check comes with the corruption it exists to catch.
# A corruption gets the owner's connection, inside the transaction that is rolled back,
# and the World; what a new check needs the sound ledger to hold (a claimed thing whose
# escrow was released, say) goes into `build`, and its ids into World.
CORRUPTIONS: dict[str, list[Corruption]] = {
    "journals_balance": [
        Corruption("an entry that unbalances a top-up journal", unbalanced_entry),
        Corruption("a journal that sums to zero only across two currencies", balanced_across_currencies),
    ],
    "journals_not_empty": [Corruption("a correction journal without entries", empty_journal)],
    "no_negative_balance": [Corruption("a balanced correction that overdraws a supporter", overdraft)],
    "entry_currency_matches_account": [
        Corruption("entries in another currency than their accounts'", entries_in_another_currency),
        Corruption("entries of another tenant than their accounts'", entries_of_another_tenant),
    ],
    "entry_journal_tenant": [
        Corruption("entries carrying another tenant than their journal's", entries_naming_another_journal_tenant),
        Corruption("a share naming a thing that does not exist", share_of_a_missing_thing),
    ],
    "closed_months_conserve": [
        # Every journal balancing, the charged and the paid of a month are equal: the
        # only way to tell them apart is a close journal that does not balance.
        Corruption("a cent more paid than charged in a close journal", close_journal_out_of_balance,
                   also=frozenset({"journals_balance"})),
    ],
    "one_close_journal_per_supporter": [
        Corruption("a second close journal charging a supporter in a closed month", second_close_journal),
    ],
    "equal_shares": [Corruption("shares of 1.00 and 3.00 in one supporter's month", unequal_shares)],
    "clicks_unique": [Corruption("a second click of a supporter on a thing in a month", duplicate_click)],
    "closes_complete": [Corruption("a finished close missing one of its shards", shard_missing)],
    "no_failed_close": [Corruption("a close that failed its self-check", failed_close)],
    "owned_by_proof": [Corruption("a thing held by an account without a verified site covering it",
                                  owned_without_proof)],
    "claimed_escrow_released": [Corruption("cents left in the escrow of a claimed thing",
                                           escrow_left_on_a_claimed_thing)],
    "no_own_share": [Corruption("a month-close share paid to the supporter's own creator account",
                                paid_for_own_thing)],
    "held_clicks_unpaid": [Corruption("a share paid for a click held for review", paid_while_held)],
    "payouts_posted": [
        Corruption("a sent payout whose journal moved another amount", payout_amount_not_moved),
        Corruption("a sent payout whose journal is no payout of its earnings", payout_journal_elsewhere),
    ],
    "payouts_covered": [Corruption("a pending payout above the creator's earnings", pending_beyond_earnings)],
    # Payments (issue 19): each new journal kind moves money only its own way...
    "topup_shape": [Corruption("a top-up into a creator's earnings", misdirected("topup", "external", "creator"))],
    "provider_fee_shape": [Corruption("a provider's fee taken from a supporter",
                                      misdirected("provider_fee", "a", "provider_fee"))],
    "refund_shape": [Corruption("a refund out of a creator's earnings", misdirected("refund", "creator", "external"))],
    "refund_reversal_shape": [Corruption("a refund's reversal into a creator's earnings",
                                         misdirected("refund_reversal", "external", "creator"))],
    "dispute_freeze_shape": [Corruption("a freeze that pays a creator", misdirected("dispute_freeze", "a", "creator"))],
    "dispute_won_shape": [Corruption("a won dispute crediting money from outside",
                                     misdirected("dispute_won", "external", "a"))],
    "dispute_lost_shape": [Corruption("a lost dispute paid from a supporter's balance",
                                      misdirected("dispute_lost", "a", "external"))],
    # ...and the rows agree with the journals.
    "topups_credited": [Corruption("a card top-up credited with another amount than its own",
                                   topup_credited_another_amount)],
    "topup_fees_recorded": [Corruption("a top-up's fee that is not the one posted", fee_not_the_one_posted)],
    "refunds_posted": [Corruption("a refund whose journal took another amount", refund_of_another_amount)],
    "disputes_conserve": [Corruption("a frozen balance that is not what the open disputes froze",
                                     frozen_not_what_disputes_hold)],
}


async def corrupt(dsn: str, world: World, corruption: Corruption) -> None:
    """Corrupt the database at `dsn` for good (a copy)."""
    owner = await asyncpg.connect(dsn)  # the owner role: the one that can go around the schema
    try:
        await corruption.corrupt(owner, world)
    finally:
        await owner.close()


async def audit_corrupted(dsn: str, world: World, corruption: Corruption) -> set[str]:
    """The checks the audit reports once `corruption` is made, in a transaction that is
    then rolled back: a copy of the sound ledger that lives as long as the audit, and
    costs milliseconds where a copied database costs a second."""
    conn = await asyncpg.connect(dsn)
    try:
        tx = conn.transaction()
        await tx.start()
        try:
            await corruption.corrupt(conn, world)  # as the owner role
            await conn.execute(f"set local role {config.SYSTEM_ROLE}")  # as `merci audit` runs
            return {v.check for v in await audit.audit(conn)}
        finally:
            await tx.rollback()
    finally:
        await conn.close()


async def audit_sound(dsn: str) -> list[audit.Violation]:
    conn = await asyncpg.connect(config.with_user(dsn, config.SYSTEM_ROLE))
    try:
        return await audit.audit(conn)
    finally:
        await conn.close()


@pytest.mark.parametrize("check", list(audit.CHECKS))
def test_every_check_can_fail(sound: Sound, check: str) -> None:
    cases = CORRUPTIONS.get(check)
    assert cases, f"the audit check {check!r} has no corruption case: add one to CORRUPTIONS ({__file__})"
    for case in cases:
        found = asyncio.run(audit_corrupted(sound.dsn, sound.world, case))
        assert found == {check} | case.also, f"{check}, {case.what}: the audit reported {sorted(found)}"
    assert asyncio.run(audit_sound(sound.dsn)) == []  # each corruption went with its transaction


def test_corruptions_name_only_existing_checks() -> None:
    named = set(CORRUPTIONS) | {c for cases in CORRUPTIONS.values() for case in cases for c in case.also}
    assert named <= set(audit.CHECKS), f"no such audit check: {sorted(named - set(audit.CHECKS))}"


def test_merci_audit_exits_non_zero_naming_the_violation(sound: Sound) -> None:
    [case] = CORRUPTIONS["clicks_unique"]
    with copy_of(sound) as dsn:
        asyncio.run(corrupt(dsn, sound.world, case))
        run = subprocess.run([sys.executable, "-m", "runtime.cli", "audit"], env=service_env(dsn), cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "VIOLATION clicks_unique: violated (clicks are unique per supporter, thing and month)" in run.stderr
    assert "checks passed" not in run.stdout

