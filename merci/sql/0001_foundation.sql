-- Merci foundation: tenants, accounts, auth, API keys, sites, things, clicks,
-- budgets, subscriptions and the double-entry ledger.
--
-- Tenancy is enforced here, by row-level security, not only in resolvers:
--   * merci_app    : the API. Owns nothing, no BYPASSRLS; every transaction sets
--                    merci.tenant_id / merci.account_id with set_config(..., true).
--   * merci_system : workers and the month close; explicit policies see all rows.
--   * the migration role (whoever runs `merci migrate`) owns the tables; FORCE
--     ROW LEVEL SECURITY makes the policies apply to it too.

create or replace function merci_tenant() returns bigint
language sql stable parallel safe as $$
  select nullif(current_setting('merci.tenant_id', true), '')::bigint
$$;

create or replace function merci_account() returns bigint
language sql stable parallel safe as $$
  select nullif(current_setting('merci.account_id', true), '')::bigint
$$;

create or replace function merci_platform_admin() returns boolean
language sql stable parallel safe as $$
  select coalesce(current_setting('merci.platform_admin', true), '') = 'on'
$$;

-- Period = first day of a calendar month (UTC).
create domain merci_period as date check (value = date_trunc('month', value)::date);
create domain merci_currency as text check (value ~ '^[A-Z]{3}$');

create table tenants (
    id                 bigint generated always as identity primary key,
    slug               text not null unique check (slug ~ '^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$'),
    name               text not null check (length(name) between 1 and 200),
    currency           merci_currency not null default 'EUR',
    fee_bps            integer not null default 1000 check (fee_bps between 0 and 5000),
    partner_share_bps  integer not null default 0 check (partner_share_bps between 0 and 10000),
    is_platform        boolean not null default false,
    created_at         timestamptz not null default now()
);

-- Public profile of an account (handle appears on buttons and auto-submit URLs):
-- readable by everyone; everything private lives in account_private.
create table accounts (
    id            bigint generated always as identity primary key,
    tenant_id     bigint not null references tenants(id),
    handle        text not null unique check (handle ~ '^[a-z0-9_]{3,30}$'),
    display_name  text not null default '' check (length(display_name) <= 100),
    created_at    timestamptz not null default now()
);
create index on accounts (tenant_id);

create table account_private (
    account_id         bigint primary key references accounts(id),
    tenant_id          bigint not null references tenants(id),
    email              text not null check (email = lower(email) and email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' and length(email) <= 254),
    password_hash      text not null,
    is_tenant_admin    boolean not null default false,
    is_platform_admin  boolean not null default false,
    created_at         timestamptz not null default now(),
    unique (tenant_id, email)
);

create table auth_tokens (
    id          bigint generated always as identity primary key,
    tenant_id   bigint not null references tenants(id),
    account_id  bigint not null references accounts(id),
    token_hash  bytea not null unique,
    created_at  timestamptz not null default now(),
    expires_at  timestamptz not null,
    revoked_at  timestamptz,
    check (expires_at > created_at)
);
create index on auth_tokens (account_id);

create table api_keys (
    id           bigint generated always as identity primary key,
    tenant_id    bigint not null references tenants(id),
    name         text not null check (length(name) between 1 and 100),
    secret_hash  bytea not null unique,
    hint         text not null,
    scopes       text[] not null check (
        cardinality(scopes) >= 1 and scopes <@ array['read','things:write','clicks:write','sites:write','webhooks:write','analytics:read']::text[]),
    created_by   bigint references accounts(id),
    created_at   timestamptz not null default now(),
    revoked_at   timestamptz
);

create table sites (
    id                   bigint generated always as identity primary key,
    tenant_id            bigint not null references tenants(id),
    owner_id             bigint not null references accounts(id),
    url                  text not null check (url ~ '^https?://' and length(url) <= 2048),
    host                 text not null check (host = lower(host)),
    verification_token   text not null,
    verified_at          timestamptz,
    verification_method  text check (verification_method in ('meta','link','well_known')),
    verification_error   text,
    listed               boolean not null default false,
    title                text check (length(title) between 1 and 200),
    description          text check (length(description) between 5 and 1000),
    language             text check (language ~ '^[a-z]{2}$'),
    category             text check (category in ('text','images','video','audio','software','people','rest')),
    tags                 text[] not null default '{}' check (cardinality(tags) <= 10),
    feed_url             text check (feed_url ~ '^https?://'),
    created_at           timestamptz not null default now(),
    updated_at           timestamptz not null default now(),
    unique (owner_id, url),
    -- Only a verified site with a complete listing can be listed.
    check (not listed or (verified_at is not null and title is not null and description is not null
                          and language is not null and category is not null))
);
create index on sites (tenant_id);
create index on sites (host);

create table things (
    id           bigint generated always as identity primary key,
    tenant_id    bigint not null references tenants(id),
    owner_id     bigint references accounts(id),         -- null: unclaimed (auto-submitted)
    site_id      bigint references sites(id),
    url          text not null unique check (url ~ '^https?://' and length(url) <= 2048),
    title        text not null default '' check (length(title) <= 300),
    description  text not null default '' check (length(description) <= 2000),
    category     text not null default 'rest' check (category in ('text','images','video','audio','software','people','rest')),
    language     text check (language ~ '^[a-z]{2}$'),
    tags         text[] not null default '{}' check (cardinality(tags) <= 10),
    hidden       boolean not null default false,
    created_at   timestamptz not null default now(),
    claimed_at   timestamptz,
    check ((owner_id is null) = (claimed_at is null) or owner_id is not null)
);
create index on things (owner_id);
create index on things (tenant_id);

-- Budgets are append-only changes; the budget in force at an instant is the
-- latest change before it (so a change after month end never alters that month).
create table budget_changes (
    id            bigint generated always as identity primary key,
    tenant_id     bigint not null references tenants(id),
    account_id    bigint not null references accounts(id),
    amount        bigint not null check (amount >= 200),
    currency      merci_currency not null,
    created_at    timestamptz not null default clock_timestamp()
);
create index on budget_changes (account_id, created_at desc);

create table subscriptions (
    id            bigint generated always as identity primary key,
    tenant_id     bigint not null references tenants(id),
    supporter_id  bigint not null references accounts(id),
    thing_id      bigint not null references things(id),
    months        integer not null check (months in (1, 3, 6, 12)),
    start_period  merci_period not null,
    status        text not null default 'active' check (status in ('active','paused','cancelled')),
    months_used   integer not null default 0 check (months_used between 0 and months),
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);
create index on subscriptions (supporter_id);
create index on subscriptions (status) where status = 'active';

-- One click per supporter, thing and month, enforced by the database.
create table clicks (
    id               bigint generated always as identity primary key,
    tenant_id        bigint not null references tenants(id),
    supporter_id     bigint not null references accounts(id),
    thing_id         bigint not null references things(id),
    period           merci_period not null,
    accepted_at      timestamptz not null,
    idempotency_key  text not null check (length(idempotency_key) between 1 and 200),
    source           text not null default 'click' check (source in ('click','subscription','partner')),
    subscription_id  bigint references subscriptions(id),
    ingested_at      timestamptz not null default now(),
    unique (supporter_id, thing_id, period),
    unique (supporter_id, idempotency_key)
);
create index on clicks (period, supporter_id);
create index on clicks (thing_id, period);

-- Public click counters for buttons, badges and the directory.
create table thing_stats (
    thing_id  bigint not null references things(id),
    period    merci_period not null,
    clicks    bigint not null default 0 check (clicks >= 0),
    primary key (thing_id, period)
);

-- ---------------------------------------------------------------- ledger
create table ledger_accounts (
    id                bigint generated always as identity primary key,
    tenant_id         bigint not null references tenants(id),
    kind              text not null check (kind in ('supporter','creator','escrow','platform_fee','partner_share','external','payout')),
    owner_account_id  bigint references accounts(id),
    thing_id          bigint references things(id),
    currency          merci_currency not null,
    created_at        timestamptz not null default now(),
    unique nulls not distinct (kind, tenant_id, owner_account_id, thing_id, currency),
    check ((kind in ('supporter','creator','payout')) = (owner_account_id is not null)),
    check ((kind = 'escrow') = (thing_id is not null))
);

create table journals (
    id          bigint generated always as identity primary key,
    tenant_id   bigint not null references tenants(id),
    kind        text not null check (kind in ('topup','month_close','escrow_release','escrow_return','payout','correction')),
    idem_key    text not null unique,
    period      merci_period,
    memo        text not null default '',
    created_at  timestamptz not null default now()
);

-- Entries are checked per statement, not per row (see merci_entries_valid below):
-- a foreign key costs a lookup per row, and the month close writes millions.
create table entries (
    id                 bigint generated always as identity primary key,
    journal_id         bigint not null,        -- a journal (checked on insert)
    ledger_account_id  bigint not null,        -- a ledger account (checked on insert)
    tenant_id          bigint not null,        -- its account's tenant, for RLS (checked on insert)
    journal_tenant_id  bigint not null,        -- its journal's tenant, for RLS (checked on insert)
    amount             bigint not null check (amount <> 0),
    currency           merci_currency not null,
    thing_id           bigint                  -- the thing a month-close share pays for (audited)
);
create index on entries (ledger_account_id);
create index on entries (journal_id);

-- Append-only: corrections are new journals.
create or replace function merci_append_only() returns trigger language plpgsql as $$
begin
  raise exception 'ledger is append-only: % on % refused', tg_op, tg_table_name
    using errcode = 'check_violation';
end $$;
create trigger journals_append_only before update or delete on journals
  for each row execute function merci_append_only();
create trigger entries_append_only before update or delete on entries
  for each row execute function merci_append_only();

-- Every statement inserting entries is checked as a whole, over its transition
-- table: each entry names an existing journal and ledger account, in that
-- account's tenant and currency, and its entries of each journal sum to zero in
-- one currency: each INSERT carries whole (balanced) journals or balanced parts. (Rows can never change
-- afterwards: journals and entries are append-only, and no role may delete them.)
create or replace function merci_entries_valid() returns trigger language plpgsql as $$
declare bad record;
begin
  -- Look each account and journal up once, not once per entry (a close writes
  -- ten entries per supporter to a few thousand accounts).
  select a.ledger_account_id into bad
    from (select distinct ledger_account_id, tenant_id, currency from new_entries) a
    left join ledger_accounts la on la.id = a.ledger_account_id
   where la.id is null or la.tenant_id <> a.tenant_id or la.currency <> a.currency
   limit 1;
  if found then
    raise exception 'entries name ledger account % which is missing or of another tenant/currency',
      bad.ledger_account_id using errcode = 'foreign_key_violation';
  end if;
  select g.journal_id into bad
    from (select distinct journal_id, journal_tenant_id from new_entries) g
    left join journals j on j.id = g.journal_id
   where j.id is null or j.tenant_id <> g.journal_tenant_id
   limit 1;
  if found then
    raise exception 'entries name journal % which is missing or of another tenant', bad.journal_id
      using errcode = 'foreign_key_violation';
  end if;
  -- Each statement's part of a journal balances on its own (so, by induction, the
  -- whole journal does): no need to read back earlier entries.
  select n.journal_id, sum(n.amount) as total, count(distinct n.currency) as currencies into bad
    from new_entries n
   group by n.journal_id
  having sum(n.amount) <> 0 or count(distinct n.currency) > 1
   limit 1;
  if found then
    raise exception 'journal % does not balance (sum %, currencies %)', bad.journal_id, bad.total, bad.currencies
      using errcode = 'check_violation';
  end if;
  return null;
end $$;
create trigger entries_valid after insert on entries
  referencing new table as new_entries
  for each statement execute function merci_entries_valid();

create view ledger_balances as
  select la.id as ledger_account_id, la.tenant_id, la.kind, la.owner_account_id, la.thing_id,
         la.currency, coalesce(sum(e.amount), 0)::bigint as balance
    from ledger_accounts la left join entries e on e.ledger_account_id = la.id
   group by la.id;

-- Round trips through broker and worker (health checks, tests).
create table worker_pings (
    marker  text primary key check (length(marker) <= 200),
    at      timestamptz not null default now()
);
