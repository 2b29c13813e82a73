"""Least privilege for the API's role (merci/sql/0014_least_privilege.sql).

The catalog is walked: everything merci_app may read or write in schemas public and
dramatiq is listed below with its policies, so a new table, a new grant or a dropped
policy fails here until someone decides it on purpose. Then the attacks that worked
before 0014, as merci_app (not a superuser: RLS applies) of one tenant, and the
legitimate flows they were blocking the way to, through GraphQL.
"""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import uuid
from typing import Any

import asyncpg
import psycopg
import pytest

import merci
from merci import config
from merci.clicks import CLICK_QUEUE, INGEST_ACTOR
from merci.db import Scope, scoped, set_scope
from merci.queue import QUEUES, Queue, make_broker
from tests.conftest import ROOT, GraphQLClient, sign_up, system_fetch, system_scalar, unique
from tests.factories import TenantWorld, make_tenant_world

ALL = "all columns"

# Relation → what merci_app may do (privilege → ALL or the columns), and, for tables,
# the policies that apply to it (name → command). Sequences: USAGE (nextval) only.
EXPECTED: dict[str, dict[str, Any]] = {
    "dramatiq.queue": {"SELECT": ("available_at", "queue_name", "state"), "policies": {}},
    "public.account_flags": {"SELECT": ALL, "policies": {"tenant_rows": "SELECT"}},
    "public.account_private": {"SELECT": ALL, "INSERT": ("account_id", "email", "password_hash", "tenant_id"),
                               "policies": {"tenant_rows": "ALL"}},
    "public.accounts": {"SELECT": ALL, "INSERT": ALL, "UPDATE": ALL,
                        "policies": {"own_tenant_insert": "INSERT", "own_tenant_update": "UPDATE",
                                     "read_all": "SELECT"}},
    "public.accounts_id_seq": {"USAGE": ALL},
    "public.api_keys": {"SELECT": ALL, "INSERT": ALL, "UPDATE": ALL, "policies": {"tenant_rows": "ALL"}},
    "public.api_keys_id_seq": {"USAGE": ALL},
    "public.auth_tokens": {"SELECT": ALL, "INSERT": ALL, "UPDATE": ALL, "policies": {"tenant_rows": "ALL"}},
    "public.auth_tokens_id_seq": {"USAGE": ALL},
    "public.budget_changes": {"SELECT": ALL, "INSERT": ALL, "UPDATE": ALL, "policies": {"tenant_rows": "ALL"}},
    "public.budget_changes_id_seq": {"USAGE": ALL},
    # The ledger and clicks are written by the workers and checked functions only (0016).
    "public.click_rejections": {"SELECT": ALL, "policies": {"tenant_rows": "ALL"}},
    # What the API answered to each flattr, for clickReceipt: no money moves on it (0018).
    "public.click_receipts": {"SELECT": ALL, "INSERT": ALL, "UPDATE": ALL, "DELETE": ALL,
                              "policies": {"tenant_rows": "ALL"}},
    # Flagged clicks (0023): platform admins read them all, a supporter their own (the
    # projected split); reviews only through merci_review_click.
    # Accepted clicks not yet stored (0024): written and read for receipts, marked unsent
    # when the broker refuses them (to null only), never deleted by the API.
    "public.click_outbox": {"SELECT": ALL, "INSERT": ("batch", "id", "signature", "tenant_id"), "UPDATE": ("sent_at",),
                            "policies": {"tenant_insert": "INSERT", "tenant_read": "SELECT",
                                         "tenant_unsent": "UPDATE"}},
    "public.click_flags": {"SELECT": ALL, "policies": {"admins_read": "SELECT", "own_rows": "SELECT"}},
    "public.clicks": {"SELECT": ALL, "policies": {"tenant_rows": "ALL"}},
    "public.clicks_id_seq": {"USAGE": ALL},
    # Written only through merci_list_cors_origin (0019).
    "public.cors_origins": {"SELECT": ALL, "policies": {"tenant_rows": "SELECT"}},
    "public.directory_state": {"SELECT": ALL, "policies": {"read_all": "SELECT"}},
    "public.embed_grants": {"SELECT": ALL, "INSERT": ALL, "UPDATE": ALL, "policies": {"tenant_rows": "ALL"}},
    "public.entries": {"SELECT": ALL, "policies": {"tenant_rows": "ALL"}},
    "public.entries_id_seq": {"USAGE": ALL},
    "public.escrow_returns": {"SELECT": ALL, "policies": {"read_all": "SELECT"}},
    "public.journals": {"SELECT": ALL, "policies": {"tenant_rows": "ALL"}},
    "public.journals_id_seq": {"USAGE": ALL},
    "public.ledger_accounts": {"SELECT": ALL, "policies": {"tenant_rows": "ALL"}},
    "public.ledger_accounts_id_seq": {"USAGE": ALL},
    "public.ledger_balances": {"SELECT": ALL},  # a view: the policies of ledger_accounts and entries
    "public.linked_accounts": {"SELECT": ALL, "INSERT": ALL, "UPDATE": ALL,
                               "policies": {"consented_insert": "INSERT", "party_rows": "SELECT",
                                            "party_update": "UPDATE"}},
    "public.linked_accounts_id_seq": {"USAGE": ALL},
    "public.listing_counts": {"SELECT": ALL, "policies": {"read_all": "SELECT"}},
    # Mail is written, never read, by the API: mails carry links that log in (0022).
    "public.mail_outbox": {"INSERT": ("account_id", "body", "id", "kind", "recipient", "subject", "tenant_id"),
                           "policies": {"tenant_insert": "INSERT"}},
    "public.mail_outbox_id_seq": {"USAGE": ALL},
    "public.month_close_shards": {"SELECT": ALL, "policies": {"read_all": "SELECT"}},
    "public.month_closes": {"SELECT": ALL, "policies": {"read_all": "SELECT"}},
    "public.oauth_clients": {"SELECT": ALL, "INSERT": ALL, "UPDATE": ALL,
                             "policies": {"own_tenant_insert": "INSERT", "own_tenant_update": "UPDATE",
                                          "read_all": "SELECT"}},
    "public.oauth_clients_id_seq": {"USAGE": ALL},
    "public.oauth_codes": {"SELECT": ALL, "INSERT": ALL, "UPDATE": ALL,
                           "policies": {"client_rows": "SELECT", "client_update": "UPDATE",
                                        "consent_insert": "INSERT"}},
    # Payments (0027): a supporter starts their own top-ups and refunds (a worker settles
    # them), sees their disputes; a creator writes their payout method's bank details (the
    # Connect account only through merci_set_stripe_account); Stripe's events are written
    # by the webhook and never read back.
    "public.disputes": {"SELECT": ALL, "policies": {"own_rows": "SELECT"}},
    "public.payout_methods": {"SELECT": ALL, "INSERT": ("account_id", "bic", "holder", "iban", "method", "tenant_id"),
                              "UPDATE": ("bic", "holder", "iban", "method", "updated_at"),
                              "policies": {"own_rows": "ALL"}},
    "public.payouts": {"SELECT": ALL, "INSERT": ALL, "policies": {"own_request": "INSERT", "own_rows": "SELECT"}},
    "public.payouts_id_seq": {"USAGE": ALL},
    "public.refunds": {"SELECT": ALL, "INSERT": ("account_id", "amount", "currency", "idempotency_key", "tenant_id",
                                                 "topup_id"),
                       "policies": {"own_request": "INSERT", "own_rows": "SELECT"}},
    "public.refunds_id_seq": {"USAGE": ALL},
    "public.search_lexemes": {"SELECT": ALL, "policies": {"read_all": "SELECT"}},
    "public.search_word_variants": {"SELECT": ALL, "policies": {"read_all": "SELECT"}},
    "public.search_words": {"SELECT": ALL, "policies": {"read_all": "SELECT"}},
    "public.site_search": {"SELECT": ALL, "policies": {"read_all": "SELECT"}},
    "public.site_search_top": {"SELECT": ALL, "policies": {"read_all": "SELECT"}},
    # sites and things: their rules are 0015's (ownership by verified scope).
    "public.sites": {"SELECT": ALL, "INSERT": ("host", "owner_id", "tenant_id", "url", "verification_token"),
                     "UPDATE": ("category", "description", "feed_url", "language", "listed", "listed_at", "tags",
                                "title", "updated_at", "verification_error", "verification_requested_at"),
                     "policies": {"own_tenant_insert": "INSERT", "own_tenant_update": "UPDATE",
                                  "read_public": "SELECT"}},
    "public.sites_id_seq": {"USAGE": ALL},
    "public.stripe_events": {"INSERT": ("created", "id", "livemode", "payload", "signature", "type"),
                             "policies": {"received": "INSERT"}},
    "public.subscription_periods": {"SELECT": ALL, "policies": {"tenant_rows": "ALL"}},
    "public.subscriptions": {"SELECT": ALL, "INSERT": ALL, "UPDATE": ALL, "policies": {"tenant_rows": "ALL"}},
    "public.subscriptions_id_seq": {"USAGE": ALL},
    "public.tenants": {"SELECT": ALL, "policies": {"read_all": "SELECT"}},
    "public.tenants_id_seq": {"USAGE": ALL},
    "public.thing_discovery": {"SELECT": ALL, "INSERT": ALL, "UPDATE": ALL, "policies": {"tenant_rows": "ALL"}},
    "public.thing_stats": {"SELECT": ALL, "policies": {"read_all": "SELECT"}},
    "public.topups": {"SELECT": ALL, "INSERT": ("account_id", "amount", "currency", "idempotency_key", "provider",
                                                "tenant_id"),
                      "UPDATE": ("checkout_session_id", "checkout_url", "status"),
                      "policies": {"own_rows": "SELECT", "own_session": "UPDATE", "own_start": "INSERT"}},
    "public.topups_id_seq": {"USAGE": ALL},
    "public.things": {"SELECT": ALL,
                      "INSERT": ("category", "description", "hidden", "language", "tags", "tenant_id", "title", "url"),
                      "UPDATE": ("category", "description", "hidden", "language", "tags", "title"),
                      "policies": {"own_tenant_insert": "INSERT", "own_tenant_update": "UPDATE",
                                   "read_all": "SELECT"}},
    "public.things_id_seq": {"USAGE": ALL},
    "public.webhook_attempts": {"SELECT": ALL, "policies": {"tenant_rows": "ALL"}},
    "public.webhook_attempts_id_seq": {"USAGE": ALL},
    "public.webhook_deliveries": {"SELECT": ALL, "INSERT": ALL, "UPDATE": ("enqueued_at",),
                                  "policies": {"tenant_rows": "ALL"}},
    "public.webhook_deliveries_id_seq": {"USAGE": ALL},
    "public.webhook_endpoints": {"SELECT": ("active", "created_at", "description", "disabled_at", "events", "id",
                                            "tenant_id", "url"),
                                 "INSERT": ALL, "UPDATE": ALL, "policies": {"tenant_rows": "ALL"}},
    "public.webhook_endpoints_id_seq": {"USAGE": ALL},
    "public.webhook_events": {"SELECT": ALL, "policies": {"tenant_rows": "ALL"}},
    "public.webhook_events_id_seq": {"USAGE": ALL},
}

# Per relation and privilege: '*' (the whole relation), the columns, or null (none).
CATALOG = """
select n.nspname || '.' || c.relname as name, c.relkind::text, p.priv,
       case when c.relkind = 'S' then case when has_sequence_privilege('merci_app', c.oid, p.priv) then '*' end
            when has_table_privilege('merci_app', c.oid, p.priv) then '*'
            when p.priv <> 'DELETE' then
              (select array_agg(a.attname::text order by a.attname) from pg_attribute a
                where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
                  and has_column_privilege('merci_app', c.oid, a.attnum, p.priv))::text end as what,
       (select coalesce(jsonb_object_agg(pol.polname, case pol.polcmd when 'r' then 'SELECT' when 'a' then 'INSERT'
                          when 'w' then 'UPDATE' when 'd' then 'DELETE' else 'ALL' end), '{}')::text
          from pg_policy pol
         where pol.polrelid = c.oid and (0 = any(pol.polroles) or 'merci_app'::regrole = any(pol.polroles)))
         as policies
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
 cross join lateral unnest(case when c.relkind = 'S' then array['USAGE', 'SELECT', 'UPDATE']
                                else array['SELECT', 'INSERT', 'UPDATE', 'DELETE'] end) as p(priv)
 where n.nspname in ('public', 'dramatiq') and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
"""


def _columns(text: str) -> tuple[str, ...]:
    return tuple(text.strip("{}").split(","))


async def test_what_merci_app_may_touch_is_exactly_the_expected_map(system_pool: asyncpg.Pool) -> None:
    async with system_pool.acquire() as conn:
        rows = await conn.fetch(CATALOG)
    actual: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["what"] is None:
            continue
        entry = actual.setdefault(r["name"], {})
        entry[r["priv"]] = ALL if r["what"] == "*" else _columns(r["what"])
        if r["relkind"] in ("r", "p"):
            entry["policies"] = json.loads(r["policies"])
    assert "public.tenants" in actual and "dramatiq.queue" in actual  # the walk sees both schemas
    unexpected = sorted(set(actual) - set(EXPECTED))
    assert unexpected == [], f"merci_app may touch relations nobody listed: {unexpected}"
    gone = sorted(set(EXPECTED) - set(actual))
    assert gone == [], f"listed relations merci_app no longer touches: {gone}"
    for name in sorted(actual):
        assert actual[name] == EXPECTED[name], name


async def test_every_table_in_public_has_forced_rls(system_pool: asyncpg.Pool) -> None:
    async with system_pool.acquire() as conn:
        rows = await conn.fetch(
            "select c.relname, c.relrowsecurity and c.relforcerowsecurity as forced from pg_class c"
            " where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p')")
    assert len(rows) > 30
    assert [r["relname"] for r in rows if not r["forced"]] == []


async def test_every_view_runs_with_the_callers_rights(system_pool: asyncpg.Pool) -> None:
    async with system_pool.acquire() as conn:
        rows = await conn.fetch(
            "select c.oid::regclass::text as name, coalesce('security_invoker=true' = any(c.reloptions), false) as ok"
            " from pg_class c where c.relkind in ('v', 'm')"
            " and c.relnamespace in ('public'::regnamespace, 'dramatiq'::regnamespace)")
    assert "ledger_balances" in [r["name"] for r in rows]
    assert [r["name"] for r in rows if not r["ok"]] == []


async def test_every_security_definer_function_pins_its_search_path(system_pool: asyncpg.Pool) -> None:
    async with system_pool.acquire() as conn:
        rows = await conn.fetch(
            "select p.oid::regprocedure::text as name, p.proconfig from pg_proc p"
            " where p.pronamespace = 'public'::regnamespace and p.prosecdef")
        public = await conn.fetch(
            "select p.proname from pg_proc p where p.proname = any($1) and has_function_privilege('public', p.oid,"
            " 'execute')", ["merci_enqueue", "merci_create_tenant", "merci_make_tenant_admin",
                            "merci_caller_is_platform_admin", "merci_caller_is_tenant_admin",
                            "merci_list_cors_origin", "merci_cors_origins", "merci_review_click"])
    assert len(rows) > 10
    assert [r["name"] for r in rows if r["proconfig"] != ["search_path=public, pg_temp"]] == []
    assert public == []  # the checked functions are merci_app's, not everyone's


# ---------------------------------------------------------------- the attacks of issue 13


@pytest.fixture(scope="module")
async def worlds(system_pool: asyncpg.Pool) -> tuple[TenantWorld, TenantWorld]:
    async with system_pool.acquire() as conn:
        return await make_tenant_world(conn), await make_tenant_world(conn)


async def test_balances_view_shows_only_the_callers_tenant(
    app_pool: asyncpg.Pool, system_pool: asyncpg.Pool, worlds: tuple[TenantWorld, TenantWorld]
) -> None:
    a, b = worlds
    async with system_pool.acquire() as conn:
        assert await conn.fetchval("select count(*) from ledger_balances where tenant_id = $1", b.tenant_id) > 0
    async with scoped(app_pool, Scope(a.tenant_id, a.supporter_id)) as conn:
        assert await conn.fetchval("select count(*) from ledger_balances where tenant_id <> $1", a.tenant_id) == 0
        # Its own balances are still whole (every entry of its accounts is its tenant's).
        assert await conn.fetchval("select balance from ledger_balances where kind = 'supporter'"
                                   " and owner_account_id = $1", a.supporter_id) == 5000


async def _refused(pool: asyncpg.Pool, scope: Scope, sql: str, *args: object) -> None:
    """`sql` as merci_app under `scope` (the attacker sets merci.platform_admin at will)."""
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with conn.transaction():
                await set_scope(conn, scope)
                await conn.execute(sql, *args)


TENANT_TERMS = "select id, fee_bps, partner_share_bps, is_platform from tenants order by id"


async def test_the_api_role_mints_no_money_and_forges_no_click(
    app_pool: asyncpg.Pool, system_pool: asyncpg.Pool, worlds: tuple[TenantWorld, TenantWorld]
) -> None:
    """A balanced journal out of thin air (a top-up for oneself), a click spending another
    supporter's budget: both were one INSERT away for the API role (0016)."""
    a, _ = worlds
    ledger_sums = "select count(*), coalesce(sum(abs(amount)), 0) from entries"
    async with system_pool.acquire() as conn:
        before = tuple(await conn.fetchrow(ledger_sums))
        outside = await conn.fetchval("select id from ledger_accounts where kind = 'external' and tenant_id = $1",
                                      a.tenant_id)
        mine = await conn.fetchval("select id from ledger_accounts where kind = 'supporter' and owner_account_id = $1",
                                   a.supporter_id)
    scope = Scope(a.tenant_id, a.supporter_id)
    await _refused(app_pool, scope, "insert into journals (tenant_id, kind, idem_key) values ($1, 'topup', 'mint')",
                   a.tenant_id)
    await _refused(app_pool, scope,
                   "insert into entries (journal_id, ledger_account_id, tenant_id, amount, currency,"
                   " journal_tenant_id) values (1, $1, $3, -100000, 'EUR', $3), (1, $2, $3, 100000, 'EUR', $3)",
                   outside, mine, a.tenant_id)
    await _refused(app_pool, scope, "insert into ledger_accounts (kind, tenant_id, currency) values ('external', $1,"
                   " 'USD')", a.tenant_id)
    await _refused(app_pool, scope,
                   "insert into clicks (tenant_id, supporter_id, thing_id, period, accepted_at, idempotency_key)"
                   " values ($1, $2, $3, date_trunc('month', now())::date, now(), 'forged')",
                   a.tenant_id, a.creator_id, a.thing_id)
    await _refused(app_pool, scope, "update clicks set thing_id = thing_id where tenant_id = $1", a.tenant_id)
    await _refused(app_pool, scope, "select merci_credit_topup($1, $2, 100000, 'EUR', 'dev', 'mint')",
                   a.tenant_id, a.supporter_id)
    async with system_pool.acquire() as conn:
        assert tuple(await conn.fetchrow(ledger_sums)) == before


async def test_dev_money_only_where_migrate_turned_it_on(
    app_pool: asyncpg.Pool, database_url: str, worlds: tuple[TenantWorld, TenantWorld]
) -> None:
    """The dev provider's top-up goes through a checked function: for the caller only, and
    refused by the database in staging or production whatever the API believes."""
    from merci import budgets
    from merci.errors import UserError
    from merci.money import Money
    from merci.payments import Charge

    a, _ = worlds
    owner = await asyncpg.connect(database_url)
    try:
        async with scoped(app_pool, Scope(a.tenant_id, a.supporter_id)) as conn:
            assert await budgets.credit_dev_topup(conn, charge=Charge("dev", "ok-1", Money(700, "EUR")))
            assert await budgets.balance(conn, account_id=a.supporter_id, currency="EUR") == 5700
        await owner.execute("update merci_settings set value = 'off' where name = 'dev_money'")
        async with scoped(app_pool, Scope(a.tenant_id, a.supporter_id)) as conn:
            with pytest.raises(UserError) as err:
                await budgets.credit_dev_topup(conn, charge=Charge("dev", "ok-2", Money(700, "EUR")))
            assert err.value.code == "PROVIDER_UNAVAILABLE"
            assert await budgets.balance(conn, account_id=a.supporter_id, currency="EUR") == 5700
    finally:
        await owner.execute("update merci_settings set value = 'on' where name = 'dev_money'")
        await owner.close()
    # Nor for someone else, by naming another tenant than the account's.
    await _refused(app_pool, Scope(a.tenant_id + 10**6, a.supporter_id), "select merci_dev_topup(700, 'EUR', 'x')")


async def test_a_tenant_cannot_set_fees_shares_or_platform(
    app_pool: asyncpg.Pool, system_pool: asyncpg.Pool, worlds: tuple[TenantWorld, TenantWorld]
) -> None:
    a, _ = worlds
    async with system_pool.acquire() as conn:
        before = [tuple(r) for r in await conn.fetch(TENANT_TERMS)]
        platform = await conn.fetchval("select id from tenants where is_platform order by id limit 1")
    for claims_admin in (False, True):
        scope = Scope(a.tenant_id, a.admin_id, platform_admin=claims_admin)
        for target in (a.tenant_id, platform):
            await _refused(app_pool, scope, "update tenants set fee_bps = 0, partner_share_bps = 10000 where id = $1",
                           target)
        await _refused(app_pool, scope, "update tenants set is_platform = true where id = $1", a.tenant_id)
    async with system_pool.acquire() as conn:
        assert [tuple(r) for r in await conn.fetch(TENANT_TERMS)] == before


async def test_nobody_makes_themselves_an_admin(
    app_pool: asyncpg.Pool, system_pool: asyncpg.Pool, worlds: tuple[TenantWorld, TenantWorld]
) -> None:
    a, b = worlds
    scope = Scope(a.tenant_id, a.supporter_id, platform_admin=True)
    await _refused(app_pool, scope, "update account_private set is_platform_admin = true where account_id = $1",
                   a.supporter_id)
    await _refused(app_pool, scope, "update account_private set is_tenant_admin = true where account_id = $1",
                   a.supporter_id)
    await _refused(app_pool, scope, "select merci_make_tenant_admin($1)", a.supporter_id)
    # Nor signs up as one: the flags are not the API's to insert.
    handle = unique("evil_")
    await _refused(app_pool, scope, """
        with acc as (insert into accounts (tenant_id, handle) values ($1, $2) returning id)
        insert into account_private (account_id, tenant_id, email, password_hash, is_platform_admin)
        select id, $1, $2 || '@example.org', 'x', true from acc""", a.tenant_id, handle)
    # Only an account that really is a platform admin passes the check, whatever the settings.
    await _refused(app_pool, Scope(b.tenant_id, b.admin_id, platform_admin=True),
                   "select merci_make_tenant_admin($1)", a.supporter_id)
    async with system_pool.acquire() as conn:
        assert await conn.fetchval("select count(*) from account_private where account_id = $1"
                                   " and (is_platform_admin or is_tenant_admin)", a.supporter_id) == 0
        assert await conn.fetchval("select count(*) from accounts where handle = $1", handle) == 0


async def test_only_a_platform_admin_creates_tenants(
    app_pool: asyncpg.Pool, system_pool: asyncpg.Pool, worlds: tuple[TenantWorld, TenantWorld]
) -> None:
    a, _ = worlds
    slug = unique("t-")
    scope = Scope(a.tenant_id, a.admin_id, platform_admin=True)
    await _refused(app_pool, scope, "insert into tenants (slug, name) values ($1, $1)", slug)
    await _refused(app_pool, scope, "insert into tenants (slug, name, fee_bps, partner_share_bps, is_platform)"
                   " values ($1, $1, 0, 10000, true)", slug)
    await _refused(app_pool, scope, "select merci_create_tenant($1, $1, 0, 10000)", slug)
    async with system_pool.acquire() as conn:
        assert await conn.fetchval("select count(*) from tenants where slug = $1", slug) == 0


def _message(actor: str, queue: str, **extra: Any) -> tuple[str, str, str]:
    message_id = str(uuid.uuid4())
    body = {"queue_name": queue, "actor_name": actor, "args": [], "kwargs": {}, "options": {},
            "message_id": message_id, "message_timestamp": 0, **extra}
    return queue, message_id, json.dumps(body)


async def test_the_api_sends_workers_only_its_own_actors(
    app_pool: asyncpg.Pool, database_url: str, worlds: tuple[TenantWorld, TenantWorld]
) -> None:
    a, _ = worlds
    scope = Scope(a.tenant_id, a.supporter_id)
    close_shard = _message("money.close_shard", "money")
    # Straight into the broker's table, or through the function: a money actor is refused.
    await _refused(app_pool, scope, "insert into dramatiq.queue (queue_name, message_id, state, message)"
                   " values ($1, $2::uuid, 'queued', $3::jsonb)", *close_shard)
    await _refused(app_pool, scope, "select merci_enqueue($1, $2::uuid, $3::jsonb)", *close_shard)
    # An allowed actor with a callback (which a worker would send for it), on another
    # queue, or under another message's id: refused too.
    for queue, message_id, body in (
            _message(INGEST_ACTOR, CLICK_QUEUE, options={"on_success": "money.close_month"}),
            _message(INGEST_ACTOR, CLICK_QUEUE, options={"pipe_target": json.loads(close_shard[2])}),
            _message(INGEST_ACTOR, "money"),
    ):
        await _refused(app_pool, scope, "select merci_enqueue($1, $2::uuid, $3::jsonb)", queue, message_id, body)
    queue, _, body = _message(INGEST_ACTOR, CLICK_QUEUE)
    await _refused(app_pool, scope, "select merci_enqueue($1, $2::uuid, $3::jsonb)", queue, str(uuid.uuid4()), body)
    # Nor read a message (they carry every tenant's clicks), rewrite or drop one.
    await _refused(app_pool, scope, "select message from dramatiq.queue limit 1")
    await _refused(app_pool, scope, "update dramatiq.queue set message = '{}' where false")
    await _refused(app_pool, scope, "delete from dramatiq.queue where false")
    # Nor replace a worker's message by sending an allowed one under its id.
    owner = await asyncpg.connect(database_url)
    tx = owner.transaction()
    await tx.start()
    try:  # rolled back: no worker ever sees these rows
        await owner.execute("insert into dramatiq.queue (queue_name, message_id, state, message)"
                            " values ($1, $2::uuid, 'queued', $3::jsonb)", *close_shard)
        await owner.execute("set local role merci_app")
        replacement = json.loads(_message(INGEST_ACTOR, CLICK_QUEUE)[2]) | {"message_id": close_shard[1]}
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with owner.transaction():
                await owner.execute("select merci_enqueue($1, $2::uuid, $3::jsonb)", CLICK_QUEUE, close_shard[1],
                                    json.dumps(replacement))
        # Positive control: what the API does send goes through.
        await owner.execute("select merci_enqueue($1, $2::uuid, $3::jsonb)", *_message(INGEST_ACTOR, CLICK_QUEUE))
        assert await owner.fetchval("select count(*) from dramatiq.queue where queue_name = $1 and state = 'queued'",
                                    CLICK_QUEUE) >= 1
        await owner.execute("reset role")
        assert await owner.fetchval("select message->>'actor_name' from dramatiq.queue where message_id = $1",
                                    uuid.UUID(close_shard[1])) == "money.close_shard"
    finally:
        await tx.rollback()
        await owner.close()


def _sent_by_the_faces() -> set[tuple[str, str]]:
    """(actor, queue) of every `….asend(ACTOR, …, queue_name=…)` in api/, directory/ and
    graph/ (graph.http sends the clicks), the names resolved in the module that sends."""
    sent = set()
    for path in sorted([*(ROOT / "api").rglob("*.py"), *(ROOT / "directory").rglob("*.py"),
                        *(ROOT / "graph").rglob("*.py")]):
        module = vars(importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts)))
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and (node.func.attr == "asend" or ast.unparse(node.func).endswith("queue.send"))):
                continue
            queue = next((k.value for k in node.keywords if k.arg == "queue_name"), ast.Constant("default"))
            sent.add((eval(ast.unparse(node.args[0]), module), eval(ast.unparse(queue), module)))  # noqa: S307
    return sent


async def test_merci_enqueue_takes_exactly_what_the_faces_send(database_url: str) -> None:
    faces = _sent_by_the_faces()
    assert (INGEST_ACTOR, CLICK_QUEUE) in faces and len(faces) >= 5
    actors = {value for name in pkgutil.iter_modules(merci.__path__)
              for key, value in vars(importlib.import_module(f"merci.{name.name}")).items()
              if key.endswith("_ACTOR") and isinstance(value, str)}
    queues = set(QUEUES) | {q for _, q in faces}
    accepted = set()
    owner = await asyncpg.connect(database_url)
    tx = owner.transaction()
    await tx.start()
    try:  # rolled back: no worker ever sees these rows
        await owner.execute("set local role merci_app")
        for actor in sorted(actors):
            for queue in sorted(queues):
                try:
                    async with owner.transaction():
                        await owner.execute("select merci_enqueue($1, $2::uuid, $3::jsonb)",
                                            *_message(actor, queue))
                    accepted.add((actor, queue))
                except asyncpg.InsufficientPrivilegeError:
                    pass
    finally:
        await tx.rollback()
        await owner.close()
    assert accepted == faces


async def test_the_apis_queue_sends_through_the_function(settings: config.Settings) -> None:
    """merci.queue as the API has it (merci_app): both the asyncpg path and the blocking
    one enqueue the API's actors, and the database refuses the others."""
    queue = Queue(make_broker("", settings.app_database_url), database_url=settings.app_database_url)
    sent: list[str] = []
    try:
        sent.append(await queue.asend(INGEST_ACTOR, [], queue_name=CLICK_QUEUE))
        assert queue.direct is not None and queue.direct.checked
        sent.append(queue.send(INGEST_ACTOR, [], queue_name=CLICK_QUEUE))
        assert queue.checked
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await queue.asend("money.close_month", "2020-01", 1, "EUR", 500, queue_name="money")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            queue.send("money.close_month", "2020-01", 1, "EUR", 500, queue_name="money")
        owner = await asyncpg.connect(settings.database_url)
        try:
            rows = await owner.fetch("select message->>'actor_name', queue_name from dramatiq.queue"
                                     " where message_id = any($1::uuid[])", sent)
            assert sorted(tuple(r) for r in rows) == [(INGEST_ACTOR, CLICK_QUEUE)] * 2
            assert await owner.fetchval("select count(*) from dramatiq.queue where message->>'actor_name'"
                                        " = 'money.close_month' and message->'args'->>0 = '2020-01'") == 0
        finally:
            # Empty batches would be harmless to a worker; gone all the same.
            await owner.execute("delete from dramatiq.queue where message_id = any($1::uuid[])", sent)
            await owner.close()
    finally:
        await queue.aclose()
        queue.close()


# ---------------------------------------------------------------- and what stays possible

CREATE_TENANT = """mutation($input: CreateTenantInput!) { createTenant(input: $input) {
  tenant { slug name feeBps partnerShareBps } userErrors { field code } } }"""
LOG_IN = """mutation($input: LogInInput!) { logIn(input: $input) { token userErrors { code } } }"""
CREATE_KEY = """mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) {
  secret userErrors { code } } }"""


def test_a_platform_admin_still_creates_tenants_with_fees_and_an_admin(
    gql: GraphQLClient, database_url: str
) -> None:
    admin = sign_up(gql)
    system_fetch(database_url, "update account_private set is_platform_admin = true where account_id = $1",
                 int(system_scalar(database_url, "select id from accounts where handle = $1", admin["handle"])))
    as_admin = gql.as_(admin["token"])
    slug, boss = unique("p-"), unique("boss_")
    data = as_admin(CREATE_TENANT, {"input": {
        "slug": slug, "name": "Partner", "feeBps": 700, "partnerShareBps": 2500,
        "admin": {"email": f"{boss}@example.org", "password": "correct horse battery", "handle": boss}}})
    assert data["createTenant"] == {"tenant": {"slug": slug, "name": "Partner", "feeBps": 700,
                                               "partnerShareBps": 2500}, "userErrors": []}
    row = system_fetch(database_url, "select t.is_platform, p.is_tenant_admin, p.is_platform_admin"
                       " from tenants t join account_private p on p.tenant_id = t.id where t.slug = $1", slug)
    assert [tuple(r) for r in row] == [(False, True, False)]
    # The new admin administers the new tenant.
    tenant_client = GraphQLClient(str(gql.http.base_url), tenant=slug)
    token = tenant_client(LOG_IN, {"input": {"email": f"{boss}@example.org",
                                             "password": "correct horse battery"}})["logIn"]["token"]
    key = GraphQLClient(str(gql.http.base_url), token, tenant=slug)(
        CREATE_KEY, {"input": {"name": "k", "scopes": ["read"]}})["createApiKey"]
    assert key["userErrors"] == [] and key["secret"].startswith("mk_")
    # The same answers as before for the refusals.
    assert as_admin(CREATE_TENANT, {"input": {"slug": slug, "name": "Again"}})["createTenant"] == {
        "tenant": None, "userErrors": [{"field": ["slug"], "code": "SLUG_TAKEN"}]}
    assert as_admin(CREATE_TENANT, {"input": {"slug": unique("p-"), "name": "X", "feeBps": 9000}})[
        "createTenant"]["userErrors"] == [{"field": ["feeBps"], "code": "INVALID_FEE"}]
    someone = gql.as_(sign_up(gql)["token"])
    assert someone(CREATE_TENANT, {"input": {"slug": unique("p-"), "name": "X"}})["createTenant"] == {
        "tenant": None, "userErrors": [{"field": None, "code": "FORBIDDEN"}]}
