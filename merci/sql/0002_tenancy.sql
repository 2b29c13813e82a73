-- Row-level security for every table, and the two roles the services log in as.
-- Roles are cluster-wide, so they are created only when missing.
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'merci_app') then
    create role merci_app login nosuperuser nocreatedb nocreaterole nobypassrls;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'merci_system') then
    create role merci_system login nosuperuser nocreatedb nocreaterole nobypassrls;
  end if;
end $$;

grant usage on schema public to merci_app, merci_system;
grant usage on all sequences in schema public to merci_app, merci_system;
grant execute on all functions in schema public to merci_app, merci_system;

-- The API may append to the ledger (top-ups) but never rewrite it.
grant select, insert on journals, entries, ledger_accounts to merci_app;
grant select on ledger_balances to merci_app, merci_system;
grant select, insert, update on tenants, accounts, account_private, auth_tokens, api_keys,
  sites, things, budget_changes, subscriptions, clicks to merci_app;
grant select on thing_stats to merci_app;
grant select, insert, update, delete on tenants, accounts, account_private, auth_tokens, api_keys,
  sites, things, budget_changes, subscriptions, clicks, thing_stats to merci_system;
grant select, insert on journals, entries, ledger_accounts to merci_system;
grant select, insert on worker_pings to merci_system;

-- Every table: RLS on and forced (the owner is held to the policies as well), and
-- explicit see-everything policies for the system role and the migration role only.
do $$
declare t text;
begin
  foreach t in array array['tenants','accounts','account_private','auth_tokens','api_keys','sites',
                           'things','budget_changes','subscriptions','clicks','thing_stats',
                           'ledger_accounts','journals','entries','worker_pings']
  loop
    execute format('alter table %I enable row level security', t);
    execute format('alter table %I force row level security', t);
    execute format('create policy system_all on %I to merci_system, current_user using (true) with check (true)', t);
  end loop;

  -- Tenant-private tables: the current tenant only.
  foreach t in array array['account_private','auth_tokens','api_keys','budget_changes',
                           'subscriptions','clicks','ledger_accounts','journals']
  loop
    execute format('create policy tenant_rows on %I to merci_app
                      using (tenant_id = merci_tenant()) with check (tenant_id = merci_tenant())', t);
  end loop;
end $$;

-- A supporter sees the whole of their own journals (where their money went),
-- including the entries that credit creators of other tenants.
create policy tenant_rows on entries to merci_app
  using (tenant_id = merci_tenant() or journal_tenant_id = merci_tenant())
  with check (tenant_id = merci_tenant() and journal_tenant_id = merci_tenant());

-- Public directories of tenants and profiles; only admins create tenants.
create policy read_all on tenants for select to merci_app using (true);
create policy admin_write on tenants for insert to merci_app with check (merci_platform_admin());
create policy admin_update on tenants for update to merci_app
  using (merci_platform_admin() or id = merci_tenant()) with check (merci_platform_admin() or id = merci_tenant());

create policy read_all on accounts for select to merci_app using (true);
create policy own_tenant_insert on accounts for insert to merci_app with check (tenant_id = merci_tenant());
create policy own_tenant_update on accounts for update to merci_app
  using (tenant_id = merci_tenant()) with check (tenant_id = merci_tenant());

-- A site is private to its tenant until verified and listed in the directory.
create policy read_public on sites for select to merci_app
  using (tenant_id = merci_tenant() or (listed and verified_at is not null));
create policy own_tenant_insert on sites for insert to merci_app with check (tenant_id = merci_tenant());
create policy own_tenant_update on sites for update to merci_app
  using (tenant_id = merci_tenant()) with check (tenant_id = merci_tenant());

-- Things are public (anyone may click them); an unclaimed thing may be claimed
-- into the claimer's tenant.
create policy read_all on things for select to merci_app using (true);
create policy own_tenant_insert on things for insert to merci_app with check (tenant_id = merci_tenant());
create policy own_tenant_update on things for update to merci_app
  using (tenant_id = merci_tenant() or owner_id is null) with check (tenant_id = merci_tenant());

create policy read_all on thing_stats for select to merci_app using (true);

insert into tenants (slug, name, is_platform) values ('merci', 'Merci', true);
