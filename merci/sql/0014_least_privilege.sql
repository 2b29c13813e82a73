-- Least privilege for the API's role. RLS keeps merci_app inside its tenant's rows,
-- but within them it could still rewrite what decides money and power: a tenant's fee
-- and partner share, admin flags, new tenants; it could read every tenant's balances
-- through a view that ran with its owner's rights, and hand the workers (merci_system)
-- any message at all. One SQL injection would have been enough. Now merci_app can
-- only do those things through functions that check who is calling, and
-- tests/merci/test_privileges.py lists everything it may touch.
--
-- (things and sites are left to 0012, which owns their rules.)

-- ---------------------------------------------------------------- views

-- A view runs with its owner's rights unless it says otherwise, and the owner sees
-- every tenant: each view now reads under the policies of whoever queries it.
do $$
declare v record;
begin
  for v in select c.oid::regclass as name from pg_class c
            where c.relkind = 'v' and c.relnamespace in ('public'::regnamespace, 'dramatiq'::regnamespace)
            order by 1 loop
    execute format('alter view %s set (security_invoker = true)', v.name);
  end loop;
end $$;

-- ---------------------------------------------------------------- checked functions

-- Whether the calling principal is a platform admin, read from the account itself:
-- merci.platform_admin is only what the API says, and a set_config away.
create function merci_caller_is_platform_admin() returns boolean
language sql stable security definer set search_path = public, pg_temp as $$
  select coalesce((select p.is_platform_admin from account_private p where p.account_id = merci_account()), false)
$$;

create function merci_create_tenant(p_slug text, p_name text, p_fee_bps integer, p_partner_share_bps integer)
returns bigint language plpgsql security definer set search_path = public, pg_temp as $$
declare
  created bigint;
begin
  if not merci_caller_is_platform_admin() then
    raise exception 'only a platform admin may create tenants' using errcode = 'insufficient_privilege';
  end if;
  insert into tenants (slug, name, fee_bps, partner_share_bps)
  values (p_slug, p_name, p_fee_bps, p_partner_share_bps)
  returning id into created;
  return created;
end $$;

-- The first admin of a tenant a platform admin just created (createTenant's `admin`).
create function merci_make_tenant_admin(p_account bigint) returns void
language plpgsql security definer set search_path = public, pg_temp as $$
begin
  if not merci_caller_is_platform_admin() then
    raise exception 'only a platform admin may make tenant admins' using errcode = 'insufficient_privilege';
  end if;
  update account_private set is_tenant_admin = true where account_id = p_account;
  if not found then
    raise exception 'no account %', p_account using errcode = 'no_data_found';
  end if;
end $$;

revoke execute on function merci_caller_is_platform_admin() from public;
revoke execute on function merci_create_tenant(text, text, integer, integer) from public;
revoke execute on function merci_make_tenant_admin(bigint) from public;
grant execute on function merci_create_tenant(text, text, integer, integer) to merci_app;
grant execute on function merci_make_tenant_admin(bigint) to merci_app;

-- ---------------------------------------------------------------- tenants and admin flags

-- Tenants are read by everyone and written by nobody but the functions above (and
-- merci_system): no insert, no update, so fees, partner shares and is_platform too.
revoke insert, update, delete on tenants from merci_app;
drop policy admin_write on tenants;
drop policy admin_update on tenants;

-- Signing up writes an account's private row, never its admin flags (their defaults:
-- false); nothing in the API updates the row afterwards.
revoke insert, update, delete on account_private from merci_app;
grant insert (account_id, tenant_id, email, password_hash) on account_private to merci_app;

-- ---------------------------------------------------------------- the broker

-- The API sends workers exactly these actors, on these queues (api/, directory/:
-- every asend). A worker runs what it is given as merci_system, so the API enqueues
-- only through here, with the very row and NOTIFY of dramatiq-postgres's ENQUEUE.
-- The message must be what merci.queue builds: no options (on_success, on_failure,
-- on_retry_exhausted and pipe_target would have a worker send any actor itself),
-- no delay, its own queue and id.
create function merci_enqueue(p_queue_name text, p_message_id uuid, p_message jsonb) returns void
language plpgsql security definer set search_path = public, pg_temp as $$
declare
  allowed constant text[] := array['clicks clicks.ingest', 'clicks subscriptions.materialize',
                                   'directory directory.verify_site', 'directory things.discover',
                                   'money payouts.send', 'webhooks webhooks.deliver'];
  written integer;
begin
  if jsonb_typeof(p_message) is distinct from 'object'
     or not (p_queue_name || ' ' || (p_message->>'actor_name')) = any(allowed) then
    raise exception 'the API may not send % on queue %', p_message->>'actor_name', p_queue_name
      using errcode = 'insufficient_privilege';
  end if;
  if p_message->>'queue_name' is distinct from p_queue_name
     or p_message->>'message_id' is distinct from p_message_id::text
     or coalesce(p_message->'options', '{}'::jsonb) <> '{}'::jsonb
     or exists (select 1 from jsonb_object_keys(p_message) k
                 where k not in ('queue_name', 'actor_name', 'args', 'kwargs', 'options', 'message_id',
                                 'message_timestamp')) then
    raise exception 'message % is not one the API builds', p_message_id using errcode = 'insufficient_privilege';
  end if;
  insert into dramatiq.queue as q (queue_name, message_id, state, message, available_at)
  values (p_queue_name, p_message_id, 'queued', p_message, now())
  on conflict (message_id) do update
    set state = 'queued', message = excluded.message, queue_name = excluded.queue_name,
        available_at = excluded.available_at, worker_id = null, consumed_at = null, mtime = now()
    -- Sending an id again replaces that message (as the broker does), but only one of these.
    where (q.queue_name || ' ' || (q.message->>'actor_name')) = any(allowed);
  get diagnostics written = row_count;
  if written = 0 then
    raise exception 'message % exists and is not the API''s to replace', p_message_id
      using errcode = 'insufficient_privilege';
  end if;
  perform pg_notify('dramatiq.' || p_queue_name || '.enqueue', '');
end $$;
revoke execute on function merci_enqueue(text, uuid, jsonb) from public;
grant execute on function merci_enqueue(text, uuid, jsonb) to merci_app;

-- The API writes no broker row itself, and reads only what its queue gauges count
-- (never a message: messages carry every tenant's clicks).
grant usage on schema dramatiq to merci_app;
revoke all on all tables in schema dramatiq from merci_app;
revoke all on all sequences in schema dramatiq from merci_app;
grant select (queue_name, state, available_at) on dramatiq.queue to merci_app;

-- ---------------------------------------------------------------- the migrations' record

-- Every table in public has RLS, forced; this one is the migration role's alone.
alter table schema_migrations enable row level security;
alter table schema_migrations force row level security;
create policy owner_all on schema_migrations to current_user using (true) with check (true);
