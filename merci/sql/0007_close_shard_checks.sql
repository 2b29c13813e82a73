-- The month close: checked per shard, and cheaper per journal and per entry.

-- Each shard of a month close checks what it posted, in the transaction that posts
-- it, and records its figures here; the close's final self-check adds them up
-- instead of scanning the month's ledger again. Null for shards closed before this
-- migration (the final check then scans the ledger, as it used to).
alter table month_close_shards
  add column journals bigint check (journals >= 0),
  add column debited  bigint,
  add column shares   bigint,
  add column fees     bigint,
  add column partner  bigint;

-- Journals name their tenant checked per statement, like entries (0001): a foreign
-- key costs a lookup per row, and a month close writes a journal per supporter.
-- Security definer: the check sees (and key-share locks) every tenant, as a foreign
-- key's would, whatever the inserting role's policies.
alter table journals drop constraint journals_tenant_id_fkey;

create or replace function merci_journals_valid() returns trigger language plpgsql
security definer set search_path = public, pg_temp as $$
declare
  wanted bigint;
  found_ bigint;
begin
  select count(distinct tenant_id) into wanted from new_journals;
  -- Locked as a foreign key would lock them: a tenant cannot go while its journals come.
  select count(*) into found_ from (
    select t.id from tenants t where t.id in (select tenant_id from new_journals) for key share of t) f;
  if found_ <> wanted then
    raise exception 'journals name a tenant that does not exist' using errcode = 'foreign_key_violation';
  end if;
  return null;
end $$;
create trigger journals_valid after insert on journals
  referencing new table as new_journals
  for each statement execute function merci_journals_valid();

-- And the other half of that foreign key: a tenant with journals cannot be deleted.
create or replace function merci_tenant_has_no_journals() returns trigger language plpgsql
security definer set search_path = public, pg_temp as $$
begin
  if exists (select 1 from journals where tenant_id = old.id) then
    raise exception 'tenant % has journals', old.id using errcode = 'foreign_key_violation';
  end if;
  return old;
end $$;
create trigger tenants_keep_journals before delete on tenants
  for each row execute function merci_tenant_has_no_journals();

-- The entries check of 0001, with the same rules and errors in fewer passes: each
-- journal's entries are summed once (per currency, then per journal) instead of
-- grouped twice, the second time by sorting them.
create or replace function merci_entries_valid() returns trigger language plpgsql as $$
declare bad record;
begin
  select a.ledger_account_id into bad
    from (select distinct ledger_account_id, tenant_id, currency from new_entries) a
    left join ledger_accounts la on la.id = a.ledger_account_id
   where la.id is null or la.tenant_id <> a.tenant_id or la.currency <> a.currency
   limit 1;
  if found then
    raise exception 'entries name ledger account % which is missing or of another tenant/currency',
      bad.ledger_account_id using errcode = 'foreign_key_violation';
  end if;
  -- Each statement's part of a journal balances on its own (so, by induction, the
  -- whole journal does): no need to read back earlier entries.
  select g.journal_id, g.total, g.currencies,
         (j.id is null or j.tenant_id <> g.tenant_lo or j.tenant_id <> g.tenant_hi) as dangling into bad
    from (select c.journal_id, sum(c.total) as total, count(*) as currencies,
                 min(c.tenant_lo) as tenant_lo, max(c.tenant_hi) as tenant_hi
            from (select n.journal_id, n.currency, sum(n.amount) as total,
                         min(n.journal_tenant_id) as tenant_lo, max(n.journal_tenant_id) as tenant_hi
                    from new_entries n group by n.journal_id, n.currency) c
           group by c.journal_id) g
    left join journals j on j.id = g.journal_id
   where j.id is null or j.tenant_id <> g.tenant_lo or j.tenant_id <> g.tenant_hi
      or g.total <> 0 or g.currencies > 1
   order by 4 desc  -- a missing journal first, as before
   limit 1;
  if found and bad.dangling then
    raise exception 'entries name journal % which is missing or of another tenant', bad.journal_id
      using errcode = 'foreign_key_violation';
  end if;
  if found then
    raise exception 'journal % does not balance (sum %, currencies %)', bad.journal_id, bad.total, bad.currencies
      using errcode = 'check_violation';
  end if;
  return null;
end $$;

-- Every entry costs an insert into each index of entries, and a month close writes a
-- dozen entries per supporter. Entries are found by journal (a journal's lines) or by
-- account (a balance), never by id alone: the primary key leads with the journal and
-- takes over the journal index. Ids still come from the identity, unique as before.
alter table entries drop constraint entries_pkey;
drop index entries_journal_id_idx;
alter table entries add primary key (journal_id, id);
-- Ids are handed to each session a thousand at a time rather than one by one (a lock
-- and a buffer per entry). Within a statement, and so within a journal, they still
-- follow insertion order; across sessions they never did.
alter table entries alter column id set cache 1000;
