-- Click fraud (issue 16): clicks that look like a ring, a burst from a new account or
-- many accounts behind one address are flagged by merci.fraud and held out of the month
-- close until a platform admin reviews them (docs/fraud.md).

-- Where a click came from: a keyed hash of the client's address (merci.clicks.client_hash;
-- the key is MERCI_SECRET_KEY, so the address space cannot be walked back from it). Null
-- for partner and subscription clicks, and for clicks ingested before this migration.
alter table clicks add column client_hash text check (client_hash ~ '^[0-9a-f]{32}$');

-- One row per flagged click. What the close needs is `holds` (merci.split): a click is
-- left out while held, when rejected, and when released only after its month's close had
-- begun (`late`: the month was already split without it; it stays that way).
-- The click's own columns are copied so that a platform admin lists flags across tenants
-- without seeing any tenant's clicks table.
create table click_flags (
    click_id      bigint primary key references clicks (id),
    tenant_id     bigint not null references tenants (id),
    period        merci_period not null,
    supporter_id  bigint not null references accounts (id),
    thing_id      bigint not null references things (id),
    accepted_at   timestamptz not null,
    reasons       text[] not null check (cardinality(reasons) between 1 and 3
                                         and reasons <@ array['ring', 'burst', 'shared_address']),
    flagged_at    timestamptz not null default now(),
    status        text not null default 'held' check (status in ('held', 'released', 'rejected')),
    reviewed_by   bigint references accounts (id),
    reviewed_at   timestamptz,
    late          boolean not null default false,
    holds         boolean generated always as (status <> 'released' or late) stored,
    check ((status = 'held') = (reviewed_at is null) and (reviewed_at is null) = (reviewed_by is null)),
    check (not late or status <> 'held')
);
create index click_flags_listed on click_flags (status, click_id);
create index click_flags_period on click_flags (period) where holds;

alter table click_flags enable row level security;
alter table click_flags force row level security;
create policy system_all on click_flags to merci_system, current_user using (true) with check (true);
-- Platform admins read every tenant's flags (the review API; the subquery makes the check
-- one InitPlan per statement, not one call per row). A supporter's own are read by the
-- dashboard's projected split, which leaves held clicks out as the close does.
create policy admins_read on click_flags for select to merci_app
  using ((select merci_caller_is_platform_admin()));
create policy own_rows on click_flags for select to merci_app
  using (tenant_id = merci_tenant() and supporter_id = merci_account());
grant select on click_flags to merci_app;
grant select, insert, update on click_flags to merci_system;
grant execute on function merci_caller_is_platform_admin() to merci_app;

-- When detection last looked at a month (the scheduler runs it every few minutes).
create table fraud_scans (
    period      merci_period primary key,
    scanned_at  timestamptz not null
);
alter table fraud_scans enable row level security;
alter table fraud_scans force row level security;
create policy system_all on fraud_scans to merci_system, current_user using (true) with check (true);
grant select, insert, update on fraud_scans to merci_system;

-- A platform admin's decision on a flagged click: 'released' (it counts) or 'rejected'
-- (it never does). Final and idempotent: the same decision again changes nothing, the
-- other one is refused. Taken under the month's lock, shared (7310003 = merci.locks.MONTH),
-- as ingestion does: a close that has begun holds it exclusively, so a decision either
-- commits before the close starts (every shard sees it) or is `late` (it counts nothing:
-- the month was split without the click, and a closed month is never reopened).
create function merci_review_click(p_click bigint, p_decision text)
returns table (click_id bigint, status text, reviewed_by bigint, reviewed_at timestamptz, late boolean,
               changed boolean)
language plpgsql security definer set search_path = public, pg_temp as $$
declare
  f click_flags%rowtype;
begin
  if not merci_caller_is_platform_admin() then
    raise exception 'only a platform admin may review flagged clicks' using errcode = 'insufficient_privilege';
  end if;
  if p_decision not in ('released', 'rejected') then
    raise exception 'a review releases or rejects' using errcode = 'check_violation';
  end if;
  select * into f from click_flags cf where cf.click_id = p_click;
  if not found then
    raise exception 'no flagged click %', p_click using errcode = 'no_data_found';
  end if;
  perform pg_advisory_xact_lock_shared(7310003, extract(year from f.period)::int * 100
                                                + extract(month from f.period)::int);
  select * into f from click_flags cf where cf.click_id = p_click for update;
  if f.status <> 'held' then
    return query select f.click_id, f.status, f.reviewed_by, f.reviewed_at, f.late, false;
    return;
  end if;
  return query
    update click_flags cf set status = p_decision, reviewed_by = merci_account(), reviewed_at = now(),
                              late = exists (select 1 from month_closes m where m.period = f.period)
     where cf.click_id = p_click
    returning cf.click_id, cf.status, cf.reviewed_by, cf.reviewed_at, cf.late, true;
end $$;
revoke execute on function merci_review_click(bigint, text) from public;
grant execute on function merci_review_click(bigint, text) to merci_app;
