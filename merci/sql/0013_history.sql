-- The history, fixed once. Before migrations were checksummed, 0001, 0002, 0003, 0006
-- and 0010 were edited after they first shipped; a database that had applied an earlier
-- text never got the edit. This brings such a database to what the files now produce,
-- one edit at a time, each only where it is missing: on a database migrated from the
-- current files every block below changes nothing. (Edits that a later migration
-- redoes anyway are left out: 0007 replaces merci_entries_valid's body everywhere.)
-- From now on a shipped migration is never edited (merci/sql/README.md).

-- 0003 (edited in 0df4aba): entries name their journal's tenant, so that a supporter
-- sees the whole of their own journals. Databases from before c3d4d07 lack the column.
do $$
begin
  if not exists (select 1 from information_schema.columns
                  where table_schema = 'public' and table_name = 'entries' and column_name = 'journal_tenant_id') then
    alter table entries add column journal_tenant_id bigint;
    -- The ledger is append-only by trigger; this one-off backfill fills a new column
    -- from the journal each entry already names, it rewrites no amount.
    alter table entries disable trigger entries_append_only;
    update entries e set journal_tenant_id = j.tenant_id from journals j where j.id = e.journal_id;
    alter table entries enable trigger entries_append_only;
    alter table entries alter column journal_tenant_id set not null;
  end if;
end $$;

-- 0002/0003 (edited in 0df4aba): the entries policy reads both tenants.
do $$
begin
  if not exists (select 1 from pg_policies
                  where schemaname = 'public' and tablename = 'entries' and policyname = 'tenant_rows'
                    and qual like '%journal_tenant_id%') then
    drop policy if exists tenant_rows on entries;
    create policy tenant_rows on entries to merci_app
      using (tenant_id = merci_tenant() or journal_tenant_id = merci_tenant())
      with check (tenant_id = merci_tenant() and journal_tenant_id = merci_tenant());
  end if;
end $$;

-- 0001 (edited in 88cd418): entries are checked per statement (merci_entries_valid:
-- account, journal, tenants, balance), not by per-row foreign keys and the old
-- balance-only trigger, which read back every earlier entry of the journal. An old
-- database has the foreign keys and entries_balanced, and so no tenant check at all.
do $$
declare c record;
begin
  for c in select conname from pg_constraint
            where conrelid = 'public.entries'::regclass and contype = 'f' order by conname loop
    execute format('alter table entries drop constraint %I', c.conname);
  end loop;
  if not exists (select 1 from pg_trigger where tgrelid = 'public.entries'::regclass and tgname = 'entries_valid') then
    create trigger entries_valid after insert on entries
      referencing new table as new_entries
      for each statement execute function merci_entries_valid();
  end if;
end $$;
drop trigger if exists entries_balanced on entries;
drop function if exists merci_journals_balanced();
grant execute on function merci_entries_valid() to merci_app, merci_system;  -- as 0002 granted it

-- 0003 (edited in 4726bf4): no indexes by thing or journal tenant on entries (each one
-- costs the month close an insert per entry, and nothing searches by them).
drop index if exists entries_thing_id_idx;
drop index if exists entries_journal_tenant_id_idx;

-- 0003 (edited in 88cd418): a close fixes its shards as id ranges when it starts. Only
-- an unfinished shard reads them; closes of the old modulo shards that are finished
-- never will, and record zeros. An unfinished one must be finished by the code that
-- started it (its shards are not ranges), so it stops this migration.
do $$
begin
  if not exists (select 1 from information_schema.columns
                  where table_schema = 'public' and table_name = 'month_closes' and column_name = 'bounds') then
    if exists (select 1 from month_closes m
                where (select count(*) from month_close_shards s where s.period = m.period) < m.shards) then
      raise exception 'a month close with modulo shards is unfinished: finish it before migrating';
    end if;
    alter table month_closes add column bounds bigint[];
    update month_closes set bounds = array_fill(0::bigint, array[shards]);
    alter table month_closes alter column bounds set not null;
    alter table month_closes add constraint month_closes_check check (cardinality(bounds) = shards);
  end if;
end $$;

-- 0006 (edited in 099cb0c): the webhook outbox triggers run as the tables' owner, so
-- whichever role makes the change its events are written.
do $$
declare f text;
begin
  foreach f in array array['merci_webhook_clicks', 'merci_webhook_month_closed', 'merci_webhook_payout'] loop
    if exists (select 1 from pg_proc where oid = to_regprocedure('public.' || f || '()') and not prosecdef) then
      execute format('alter function %I() security definer set search_path = public, pg_temp', f);
    end if;
  end loop;
end $$;
grant update (enqueued_at) on webhook_deliveries to merci_app;  -- a replay, once handed to the broker

-- 0010 (edited in fdb36e9): any update or deletion of a login's rows announces the
-- principal, not only the columns the first version filtered on (a new password must
-- evict cached sessions too).
do $$
declare t text;
begin
  foreach t in array array['auth_tokens', 'api_keys', 'account_private'] loop
    if exists (select 1 from pg_trigger
                where tgrelid = format('public.%I', t)::regclass
                  and (tgname = t || '_principal_gone' or (tgname = t || '_principal' and tgqual is not null))) then
      execute format('drop trigger if exists %I on %I', t || '_principal_gone', t);
      execute format('drop trigger if exists %I on %I', t || '_principal', t);
      execute format('create trigger %I after update or delete on %I
                        for each row execute function merci_principal_changed()', t || '_principal', t);
    end if;
  end loop;
end $$;
