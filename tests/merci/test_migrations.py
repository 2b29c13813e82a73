from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from merci import db
from merci.db import MigrationChanged, checksum, migrate, migration_files
from runtime import cli
from tests.conftest import create_database, drop_database


async def test_migrations_apply_to_empty_database_then_noop(server_url: str) -> None:
    dsn = create_database(server_url, "merci_migr")
    try:
        first = await migrate(dsn)
        assert first == [v for v, _ in migration_files()]
        assert await migrate(dsn) == []
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("select slug from tenants") == "merci"
            assert await conn.fetchval("select count(*) from schema_migrations") == len(first)
        finally:
            await conn.close()
    finally:
        drop_database(server_url, dsn)


def test_migration_files_are_ordered_and_unique() -> None:
    versions = [v for v, _ in migration_files()]
    assert versions == sorted(versions)
    assert len({v[:4] for v in versions}) == len(versions)


# ---------------------------------------------------------------- immutable history


@pytest.fixture
async def migrated(server_url: str) -> AsyncIterator[str]:
    dsn = create_database(server_url, "merci_migr")
    try:
        await migrate(dsn)
        yield dsn
    finally:
        drop_database(server_url, dsn)


def _edited(version: str, extra: tuple[tuple[str, str], ...] = ()) -> Callable[[], list[tuple[str, str]]]:
    """The migration list as a copy, with `version`'s text edited and `extra` appended."""
    files = [(v, sql + "\n-- edited after it shipped\n" if v == version else sql) for v, sql in migration_files()]
    return lambda: files + list(extra)


async def test_a_changed_migration_stops_migrate_before_anything(
    migrated: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "migration_files",
                        _edited("0003_money", (("9999_later", "create table later_one (id int)"),)))
    with pytest.raises(MigrationChanged, match=r"merci/sql/0003_money\.sql changed after it was applied"):
        await migrate(migrated)
    conn = await asyncpg.connect(migrated)
    try:  # the pending migration behind the refusal was not applied
        assert await conn.fetchval("select to_regclass('later_one')") is None
        assert await conn.fetchval("select count(*) from schema_migrations where version = '9999_later'") == 0
    finally:
        await conn.close()


async def test_a_deleted_migration_stops_migrate(migrated: str, monkeypatch: pytest.MonkeyPatch) -> None:
    files = [(v, sql) for v, sql in migration_files() if v != "0009_budget_ties"]
    monkeypatch.setattr(db, "migration_files", lambda: files)
    with pytest.raises(MigrationChanged, match=r"merci/sql/0009_budget_ties\.sql was applied .* no longer exists"):
        await migrate(migrated)


def test_merci_migrate_exits_non_zero_naming_the_file(
    migrated: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", migrated)
    monkeypatch.setattr(db, "migration_files", _edited("0010_principal_events"))
    assert cli.cmd_migrate(argparse.Namespace()) == 1
    err = capsys.readouterr().err
    assert "merci/sql/0010_principal_events.sql changed" in err and "Nothing was applied" in err
    monkeypatch.setattr(db, "migration_files", migration_files)
    assert cli.cmd_migrate(argparse.Namespace()) == 0


async def test_checksums_are_backfilled_once_for_an_older_database(migrated: str) -> None:
    conn = await asyncpg.connect(migrated)
    try:
        # As migrate left schema_migrations before checksums existed.
        await conn.execute("alter table schema_migrations drop column checksum")
        assert await migrate(migrated) == []
        rows = await conn.fetch("select version, checksum from schema_migrations order by version")
        assert [(r["version"], r["checksum"]) for r in rows] == [(v, checksum(sql)) for v, sql in migration_files()]
    finally:
        await conn.close()


# ---------------------------------------------------------------- 0013: the history fixed once

# Everything in schema public that a migration decides, in a comparable form (column
# order aside: an old database added some columns later, and nothing depends on it).
FINGERPRINT = """
select 'column', format('%s.%s %s %s %s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                        a.attnotnull, pg_get_expr(d.adbin, d.adrelid)),
       array(select x::text from unnest(a.attacl) x order by 1)::text
  from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
  left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
 where n.nspname = 'public' and a.attnum > 0 and not a.attisdropped
union all
select 'relation', format('%s %s rls=%s force=%s', c.relname, c.relkind, c.relrowsecurity, c.relforcerowsecurity),
       array(select x::text from unnest(c.relacl) x order by 1)::text
  from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public'
union all
select 'constraint', conrelid::regclass::text || ' ' || conname, pg_get_constraintdef(oid)
  from pg_constraint where connamespace = 'public'::regnamespace
union all
select 'index', indexname, indexdef from pg_indexes where schemaname = 'public'
union all
select 'trigger', tgrelid::regclass::text || ' ' || tgname, pg_get_triggerdef(oid)
  from pg_trigger
 where not tgisinternal and tgrelid in (select oid from pg_class where relnamespace = 'public'::regnamespace)
union all
select 'policy', tablename || ' ' || policyname, format('%s %s %s %s %s', permissive, roles, cmd, qual, with_check)
  from pg_policies where schemaname = 'public'
union all
select 'function', p.oid::regprocedure::text,
       format('%s %s %s %s', p.prosecdef, p.proconfig, md5(p.prosrc),
              array(select x::text from unnest(p.proacl) x order by 1))
  from pg_proc p where p.pronamespace = 'public'::regnamespace
   and not exists (select 1 from pg_depend e where e.objid = p.oid and e.deptype = 'e')
order by 1, 2, 3
"""


def _history_sql() -> str:
    return dict(migration_files())["0013_history"]


async def _fingerprint(conn: asyncpg.Connection) -> list[tuple[str, str, str]]:
    return [tuple(r) for r in await conn.fetch(FINGERPRINT)]


async def test_0013_changes_nothing_on_a_database_migrated_from_the_current_files(migrated: str) -> None:
    conn = await asyncpg.connect(migrated)
    try:
        before = await _fingerprint(conn)
        assert any(kind == "trigger" and "entries_valid" in name for kind, name, _ in before)
        await conn.execute(_history_sql())
        assert await _fingerprint(conn) == before
    finally:
        await conn.close()


# What 0001, 0002/0003, 0006 and 0010 used to create, before they were edited in place.
OLD_SCHEMA = """
-- 0001 before 88cd418: per-row foreign keys and a balance-only check of entries.
drop trigger entries_valid on entries;
create function merci_journals_balanced() returns trigger language plpgsql as $$
begin return null; end $$;
create trigger entries_balanced after insert on entries
  referencing new table as new_entries for each statement execute function merci_journals_balanced();
alter table entries add constraint entries_ledger_account_id_fkey
  foreign key (ledger_account_id) references ledger_accounts(id);
-- 0003 before 4726bf4: an index by thing on entries.
create index entries_thing_id_idx on entries (thing_id) where thing_id is not null;
-- 0002/0003 before c3d4d07: entries knew only their account's tenant.
drop policy tenant_rows on entries;
alter table entries drop column journal_tenant_id;
create policy tenant_rows on entries to merci_app
  using (tenant_id = merci_tenant()) with check (tenant_id = merci_tenant());
-- 0006 before 099cb0c: outbox triggers ran as the changing role.
alter function merci_webhook_payout() security invoker reset search_path;
-- 0010 before fdb36e9: filtered update triggers and separate delete triggers.
drop trigger account_private_principal on account_private;
create trigger account_private_principal after update on account_private for each row
  when (old.is_tenant_admin is distinct from new.is_tenant_admin
        or old.is_platform_admin is distinct from new.is_platform_admin)
  execute function merci_principal_changed();
create trigger account_private_principal_gone after delete on account_private for each row
  execute function merci_principal_changed();
"""


async def test_0013_brings_a_database_migrated_before_the_edits_up_to_date(migrated: str) -> None:
    conn = await asyncpg.connect(migrated)
    try:
        current = await _fingerprint(conn)
        tenant = await conn.fetchval("select id from tenants where slug = 'merci'")
        journal = await conn.fetchval("insert into journals (tenant_id, kind, idem_key) values ($1, 'correction', 'h1')"
                                      " returning id", tenant)
        accounts = [await conn.fetchval("insert into ledger_accounts (tenant_id, kind, currency)"
                                        " values ($1, $2, 'EUR') returning id", tenant, kind)
                    for kind in ("external", "platform_fee")]
        await conn.execute("insert into entries (journal_id, ledger_account_id, tenant_id, journal_tenant_id, amount,"
                           " currency) values ($1, $2, $4, $4, -5, 'EUR'), ($1, $3, $4, $4, 5, 'EUR')",
                           journal, *accounts, tenant)

        await conn.execute(OLD_SCHEMA)
        old = await _fingerprint(conn)
        assert old != current
        await conn.execute(_history_sql())
        assert await _fingerprint(conn) == current
        # The column came back filled from each entry's journal.
        assert await conn.fetchval("select array_agg(distinct journal_tenant_id) from entries where journal_id = $1",
                                   journal) == [tenant]
        # And entries are checked again: a journal of another tenant is refused.
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await conn.execute("insert into entries (journal_id, ledger_account_id, tenant_id, journal_tenant_id,"
                               " amount, currency) values ($1, $2, $4, $5, -1, 'EUR'), ($1, $3, $4, $5, 1, 'EUR')",
                               journal, *accounts, tenant, tenant + 1)
    finally:
        await conn.close()
