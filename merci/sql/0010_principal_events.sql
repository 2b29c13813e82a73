-- API processes keep resolved tokens a few seconds (merci.accounts.PrincipalCache). So
-- that a logout, a revoked key or a lost admin right takes effect in every process at
-- once, not when its cache expires, each change to what a principal is resolved from is
-- announced on the channel merci_principals, on commit (a rolled-back change announces
-- nothing): 'account:<id>' for a session's account, 'key:<id>' for an API key. Every API
-- process listens (merci.accounts.PrincipalEvictions) and forgets what it had cached.
create or replace function merci_principal_changed() returns trigger language plpgsql as $$
declare
  r record;
begin
  r := case when tg_op = 'DELETE' then old else new end;
  if tg_table_name = 'api_keys' then
    perform pg_notify('merci_principals', 'key:' || r.id);
  else
    perform pg_notify('merci_principals', 'account:' || r.account_id);
  end if;
  return null;
end $$;

create trigger auth_tokens_principal after update on auth_tokens for each row
  when (old.revoked_at is distinct from new.revoked_at or old.expires_at is distinct from new.expires_at
        or old.account_id is distinct from new.account_id)
  execute function merci_principal_changed();
create trigger auth_tokens_principal_gone after delete on auth_tokens for each row
  execute function merci_principal_changed();

create trigger api_keys_principal after update on api_keys for each row
  when (old.revoked_at is distinct from new.revoked_at or old.scopes is distinct from new.scopes
        or old.tenant_id is distinct from new.tenant_id)
  execute function merci_principal_changed();
create trigger api_keys_principal_gone after delete on api_keys for each row
  execute function merci_principal_changed();

create trigger account_private_principal after update on account_private for each row
  when (old.is_tenant_admin is distinct from new.is_tenant_admin
        or old.is_platform_admin is distinct from new.is_platform_admin)
  execute function merci_principal_changed();
create trigger account_private_principal_gone after delete on account_private for each row
  execute function merci_principal_changed();
