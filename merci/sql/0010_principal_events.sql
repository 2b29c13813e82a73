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

-- Any update or deletion of these rows announces: they change only to revoke, expire or
-- re-scope a login (or on a rare edit such as a new password), and a needless eviction
-- costs one lookup.
create trigger auth_tokens_principal after update or delete on auth_tokens
  for each row execute function merci_principal_changed();
create trigger api_keys_principal after update or delete on api_keys
  for each row execute function merci_principal_changed();
create trigger account_private_principal after update or delete on account_private
  for each row execute function merci_principal_changed();
