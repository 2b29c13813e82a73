-- Payouts: a creator asks for their earnings (at least the threshold); a money worker
-- sends them through the payout provider and, once the provider has taken them, posts
-- the `payout` journal (earnings → the outside world). Until then the request only
-- reserves: the earnings stay where they are, and what pending requests reserve is not
-- available to another.

create table payouts (
    id              bigserial primary key,
    tenant_id       bigint not null references tenants(id),
    account_id      bigint not null references accounts(id),
    amount          bigint not null check (amount > 0),
    currency        text not null,
    provider        text not null,
    idempotency_key text not null check (length(idempotency_key) between 1 and 100),
    status          text not null default 'pending' check (status in ('pending', 'sent', 'failed')),
    reference       text,   -- the provider's id for the transfer, once sent
    reason          text,   -- why it failed
    journal_id      bigint references journals(id),
    created_at      timestamptz not null default now(),
    settled_at      timestamptz,
    unique (account_id, idempotency_key),
    check ((status = 'sent') = (journal_id is not null and reference is not null)),
    check ((status = 'failed') = (reason is not null)),
    check ((status = 'pending') = (settled_at is null))
);
create index on payouts (account_id, id desc);
create index on payouts (created_at) where status = 'pending';

alter table payouts enable row level security;
alter table payouts force row level security;
create policy system_all on payouts to merci_system, current_user using (true) with check (true);
-- A creator sees and asks for their own payouts; only a worker settles them.
create policy own_rows on payouts for select to merci_app
  using (tenant_id = merci_tenant() and account_id = merci_account());
create policy own_request on payouts for insert to merci_app
  with check (tenant_id = merci_tenant() and account_id = merci_account() and status = 'pending'
              and journal_id is null and reference is null);

grant select, insert on payouts to merci_app;
grant select, insert, update on payouts to merci_system;
grant usage on sequence payouts_id_seq to merci_app, merci_system;
