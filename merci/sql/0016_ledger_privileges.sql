-- The API role appends nothing to the ledger and stores no click by itself. Until now
-- merci_app could insert any balanced journal (a top-up out of thin air, for anyone of its
-- tenant) and any click (spending another supporter's budget): one SQL injection would
-- have minted money. Money moves only through the workers (merci_system) and through
-- checked functions; clicks only through the queue and the ingestion worker.

-- Deployment facts the database itself enforces, written by `merci migrate` (the owner
-- role) from the environment; no other role may read or change them.
create table merci_settings (
    name   text primary key check (name ~ '^[a-z_]{1,40}$'),
    value  text not null check (length(value) <= 200)
);
alter table merci_settings enable row level security;
alter table merci_settings force row level security;
create policy owner_all on merci_settings to current_user using (true) with check (true);
-- Free money (the `dev` payment provider) only where `merci migrate` said so: in
-- development and tests, never in staging or production (nor when nobody said).
insert into merci_settings (name, value) values ('dev_money', 'off');

-- Money in: the outside world -> a supporter's balance, once per provider reference.
-- The one implementation: the workers (a payment provider's webhook, the demo) call it
-- as merci_system; the API only through merci_dev_topup below.
create or replace function merci_credit_topup(p_tenant bigint, p_account bigint, p_amount bigint, p_currency text,
                                              p_provider text, p_reference text) returns boolean
language plpgsql security definer set search_path = public, pg_temp as $$
declare
  outside bigint;
  balance bigint;
  jid bigint;
begin
  if p_amount <= 0 then
    raise exception 'a top-up is positive' using errcode = 'check_violation';
  end if;
  insert into ledger_accounts (kind, tenant_id, currency) values ('external', p_tenant, p_currency)
  on conflict do nothing;
  select id into outside from ledger_accounts
   where kind = 'external' and tenant_id = p_tenant and currency = p_currency
     and owner_account_id is null and thing_id is null;
  insert into ledger_accounts (kind, tenant_id, currency, owner_account_id)
  values ('supporter', p_tenant, p_currency, p_account) on conflict do nothing;
  select id into balance from ledger_accounts
   where kind = 'supporter' and tenant_id = p_tenant and currency = p_currency
     and owner_account_id = p_account and thing_id is null;
  insert into journals (tenant_id, kind, idem_key, memo)
  values (p_tenant, 'topup', 'topup:' || p_provider || ':' || p_reference, 'top-up via ' || p_provider)
  on conflict (idem_key) do nothing
  returning id into jid;
  if jid is null then
    return false;
  end if;
  insert into entries (journal_id, ledger_account_id, tenant_id, amount, currency, journal_tenant_id)
  values (jid, outside, p_tenant, -p_amount, p_currency, p_tenant),
         (jid, balance, p_tenant, p_amount, p_currency, p_tenant);
  return true;
end $$;

-- The `dev` provider's top-up, for the caller only (the transaction's account, in its
-- home tenant), at most 1,000.00, and only where dev money is on.
create or replace function merci_dev_topup(p_amount bigint, p_currency text, p_reference text) returns boolean
language plpgsql security definer set search_path = public, pg_temp as $$
declare
  me bigint := merci_account();
begin
  if coalesce((select value from merci_settings where name = 'dev_money'), 'off') <> 'on' then
    raise exception 'the dev payment provider is disabled here' using errcode = 'insufficient_privilege';
  end if;
  if me is null or not exists (select 1 from accounts a where a.id = me and a.tenant_id = merci_tenant()) then
    raise exception 'a top-up is for the signed-in account, in its own tenant' using errcode = 'insufficient_privilege';
  end if;
  if p_amount not between 1 and 100000 then
    raise exception 'a dev top-up is 0.01 to 1,000.00' using errcode = 'check_violation';
  end if;
  return merci_credit_topup(merci_tenant(), me, p_amount, p_currency, 'dev', p_reference);
end $$;

revoke execute on function merci_credit_topup(bigint, bigint, bigint, text, text, text),
  merci_dev_topup(bigint, text, text) from public;
grant execute on function merci_credit_topup(bigint, bigint, bigint, text, text, text) to merci_system;
grant execute on function merci_dev_topup(bigint, text, text) to merci_app;

revoke insert on journals, entries, ledger_accounts from merci_app;
revoke insert, update on clicks from merci_app;
revoke insert on subscription_periods, click_rejections from merci_app;

-- Functions run by PUBLIC by default; these are the roles' business only.
revoke execute on function merci_refresh_search_top() from public, merci_app;
grant execute on function merci_refresh_search_top() to merci_system;
