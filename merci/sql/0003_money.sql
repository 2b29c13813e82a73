-- The money core: click rejections, subscription periods, the month close's
-- progress, and per-share detail on ledger entries.

alter table subscriptions drop constraint subscriptions_status_check;
alter table subscriptions add constraint subscriptions_status_check
  check (status in ('active', 'paused', 'cancelled', 'completed'));

-- Which months of a subscription's term have been counted (one row per month:
-- the primary key is what makes "never twice in a month" hold).
create table subscription_periods (
    subscription_id  bigint not null references subscriptions(id),
    period           merci_period not null,
    tenant_id        bigint not null references tenants(id),
    primary key (subscription_id, period)
);

-- A click the workers refused after it was accepted as pending (the API checks
-- cheaply; the worker decides). Keyed like clicks, so redelivery records nothing new.
create table click_rejections (
    supporter_id     bigint not null references accounts(id),
    idempotency_key  text not null,
    tenant_id        bigint not null references tenants(id),
    thing_id         bigint references things(id),
    url              text,
    period           merci_period not null,
    reason           text not null check (reason in ('OWN_THING', 'ALREADY_THIS_MONTH', 'MONTH_CLOSED', 'INVALID_URL')),
    at               timestamptz not null default now(),
    primary key (supporter_id, idempotency_key)
);

create index on ledger_accounts (owner_account_id) where owner_account_id is not null;
create index on ledger_accounts (thing_id) where thing_id is not null;

create table month_closes (
    period       merci_period primary key,
    status       text not null default 'running' check (status in ('running', 'done', 'failed')),
    shards       integer not null check (shards between 1 and 4096),
    -- shard k closes supporters with bounds[k] <= id < bounds[k+1] (the last: no upper bound);
    -- fixed when the close starts, so a resumed close cuts the same shards.
    bounds       bigint[] not null check (cardinality(bounds) = shards),
    currency     merci_currency not null,
    default_budget bigint not null check (default_budget >= 0),
    started_at   timestamptz not null default now(),
    finished_at  timestamptz,
    error        text,
    summary      jsonb
);

create table month_close_shards (
    period     merci_period not null references month_closes(period),
    shard      integer not null,
    done_at    timestamptz not null default now(),
    supporters integer not null,
    clicks     bigint not null,
    charged    bigint not null,
    primary key (period, shard)
);

-- Escrow returned to supporters after the hold period, per thing and month.
create table escrow_returns (
    thing_id   bigint not null references things(id),
    period     merci_period not null,
    journal_id bigint references journals(id),
    primary key (thing_id, period)
);

alter table journals drop constraint journals_kind_check;
alter table journals add constraint journals_kind_check
  check (kind in ('topup', 'month_close', 'escrow_release', 'escrow_return', 'payout', 'correction'));

do $$
declare t text;
begin
  foreach t in array array['subscription_periods', 'click_rejections', 'month_closes', 'month_close_shards',
                           'escrow_returns']
  loop
    execute format('alter table %I enable row level security', t);
    execute format('alter table %I force row level security', t);
    execute format('create policy system_all on %I to merci_system, current_user using (true) with check (true)', t);
  end loop;
  foreach t in array array['subscription_periods', 'click_rejections']
  loop
    execute format('create policy tenant_rows on %I to merci_app
                      using (tenant_id = merci_tenant()) with check (tenant_id = merci_tenant())', t);
  end loop;
end $$;

-- Whether a month is closed is public knowledge.
create policy read_all on month_closes for select to merci_app using (true);
create policy read_all on month_close_shards for select to merci_app using (true);
create policy read_all on escrow_returns for select to merci_app using (true);

grant select, insert on subscription_periods, click_rejections to merci_app;
grant select on month_closes, month_close_shards, escrow_returns to merci_app;
grant select, insert, update on subscription_periods, click_rejections, month_closes, month_close_shards,
  escrow_returns to merci_system;
