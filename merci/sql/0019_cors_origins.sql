-- Browser apps on other origins may call /graphql (CORS) when their origin is listed:
-- the web app's origins come from the configuration (MERCI_CORS_ORIGINS), partners' apps
-- are listed here, per tenant, by the tenant's admins. A listed origin's pages may send
-- the user's cookie along (credentialed CORS), so the list is a power like an admin flag:
-- merci_app reads its tenant's rows and writes them only through the checked functions
-- below, and reads the whole list (every API process keeps it, api/cors.py) only
-- through merci_cors_origins().
create table cors_origins (
    tenant_id   bigint not null references tenants (id),
    -- As browsers send it in `Origin`: scheme://host[:port], lowercase, no default port
    -- (merci.urls.normalize_origin); https, or http on the local machine.
    origin      text not null check (length(origin) <= 300
                     and (origin ~ '^https://[a-z0-9.:\[\]-]+$'
                          or origin ~ '^http://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]+)?$')),
    created_at  timestamptz not null default now(),
    created_by  bigint references accounts (id),
    primary key (tenant_id, origin)
);
create index cors_origins_origin on cors_origins (origin);

alter table cors_origins enable row level security;
alter table cors_origins force row level security;
create policy system_all on cors_origins to merci_system, current_user using (true) with check (true);
create policy tenant_rows on cors_origins for select to merci_app using (tenant_id = merci_tenant());
grant select on cors_origins to merci_app;
grant select on cors_origins to merci_system;

-- Whether the calling principal administers the transaction's tenant, read from the
-- account itself (the API's claim, merci.platform_admin, is only a set_config away).
create function merci_caller_is_tenant_admin() returns boolean
language sql stable security definer set search_path = public, pg_temp as $$
  select coalesce((select (p.is_tenant_admin or p.is_platform_admin) and p.tenant_id = merci_tenant()
                     from account_private p where p.account_id = merci_account()), false)
$$;

-- List (p_listed) or unlist an origin for the caller's tenant; false when that changed nothing.
create function merci_list_cors_origin(p_origin text, p_listed boolean) returns boolean
language plpgsql security definer set search_path = public, pg_temp as $$
begin
  if not merci_caller_is_tenant_admin() then
    raise exception 'only a tenant admin may change its origins' using errcode = 'insufficient_privilege';
  end if;
  if p_listed then
    insert into cors_origins (tenant_id, origin, created_by) values (merci_tenant(), p_origin, merci_account())
    on conflict do nothing;
  else
    delete from cors_origins where tenant_id = merci_tenant() and origin = p_origin;
  end if;
  return found;
end $$;

-- Every tenant's origins: what each API process answers preflights from.
create function merci_cors_origins() returns table (origin text, tenant_id bigint)
language sql stable security definer set search_path = public, pg_temp as $$
  select c.origin, c.tenant_id from cors_origins c
$$;

revoke execute on function merci_caller_is_tenant_admin() from public;
revoke execute on function merci_list_cors_origin(text, boolean) from public;
revoke execute on function merci_cors_origins() from public;
grant execute on function merci_list_cors_origin(text, boolean) to merci_app;
grant execute on function merci_cors_origins() to merci_app;
