-- Accounts (issue 16): email verification before money moves, an outbox for mail,
-- password changes and resets, and account deletion.
--
-- merci_app still writes no private row after sign-up: each change below goes through a
-- function that acts on the transaction's own account (merci_account(), in its home
-- tenant) and nothing else. The API sets that account only for the caller it has
-- authenticated: by session, or by a link it signed itself (merci.account_mail).

-- ---------------------------------------------------------------- account_private

alter table account_private
  add column email_verified_at timestamptz,
  -- Set by merci_delete_account: the row stays (the ledger names the account), emptied.
  add column deleted_at timestamptz;

-- Accounts that existed before verification did were in use: they keep working.
update account_private set email_verified_at = created_at where email_verified_at is null;

-- ---------------------------------------------------------------- the outbox

-- Mail is written in the transaction that decides it (a sign-up and its verification
-- mail commit together or not at all) and sent afterwards by the `mail.send` actor; the
-- scheduler sends again what is still unsent (a lost message, a dead worker).
create table mail_outbox (
    id          bigserial primary key,
    tenant_id   bigint not null references tenants (id),
    account_id  bigint references accounts (id),
    kind        text not null check (kind in ('verify_email', 'sign_up_attempt', 'password_reset',
                                              'password_changed', 'account_deleted')),
    recipient   text not null check (length(recipient) <= 254 and recipient like '%@%'),
    subject     text not null check (length(subject) between 1 and 200),
    body        text not null check (length(body) <= 20000),
    created_at  timestamptz not null default now(),
    sent_at     timestamptz,
    attempts    integer not null default 0,
    last_error  text check (length(last_error) <= 1000)
);
create index mail_outbox_unsent on mail_outbox (created_at) where sent_at is null;
create index on mail_outbox (account_id);

alter table mail_outbox enable row level security;
alter table mail_outbox force row level security;
create policy system_all on mail_outbox to merci_system, current_user using (true) with check (true);
-- The API writes mail, in its tenant, and reads none: mails carry links that log in. (So
-- no RETURNING either: it takes the id from the sequence first.)
create policy tenant_insert on mail_outbox for insert to merci_app with check (tenant_id = merci_tenant());
grant insert (id, tenant_id, account_id, kind, recipient, subject, body) on mail_outbox to merci_app;
grant usage on sequence mail_outbox_id_seq to merci_app;
grant select, insert, update, delete on mail_outbox to merci_system;

-- The dev mailbox (/dev/mailbox): the latest mails of a recipient, or of everyone, only
-- where `merci migrate` turned dev money on (development and test, never production).
create function merci_dev_mailbox(p_recipient text, p_limit integer)
returns table (id bigint, tenant_id bigint, kind text, recipient text, subject text, body text,
               created_at timestamptz, sent_at timestamptz)
language plpgsql stable security definer set search_path = public, pg_temp as $$
begin
  if coalesce((select value from merci_settings where name = 'dev_money'), 'off') <> 'on' then
    raise exception 'the dev mailbox is disabled here' using errcode = 'insufficient_privilege';
  end if;
  return query
    select m.id, m.tenant_id, m.kind, m.recipient, m.subject, m.body, m.created_at, m.sent_at
      from mail_outbox m
     where p_recipient is null or m.recipient = lower(p_recipient)
     order by m.id desc limit least(greatest(p_limit, 1), 200);
end $$;

-- ---------------------------------------------------------------- the caller's own account

-- The caller, if it is an account of the transaction's tenant that is not deleted.
create function merci_own_account() returns bigint
language sql stable security definer set search_path = public, pg_temp as $$
  select p.account_id from account_private p
   where p.account_id = merci_account() and p.tenant_id = merci_tenant() and p.deleted_at is null
$$;

-- The caller's email is verified, if it still is p_email (a link names the address it
-- went to). False when it is not (changed, deleted): the link no longer holds.
create function merci_verify_email(p_email text) returns boolean
language plpgsql security definer set search_path = public, pg_temp as $$
begin
  update account_private set email_verified_at = coalesce(email_verified_at, now())
   where account_id = merci_own_account() and email = p_email;
  return found;
end $$;

-- A new password for the caller; every session ends (tokens, embed grants). A reset by
-- a mailed link proves the address too (p_verified).
create function merci_set_password(p_hash text, p_verified boolean) returns boolean
language plpgsql security definer set search_path = public, pg_temp as $$
declare
  me bigint := merci_own_account();
begin
  if me is null or p_hash is null or length(p_hash) not between 20 and 500 then
    return false;
  end if;
  update account_private
     set password_hash = p_hash,
         email_verified_at = case when p_verified then coalesce(email_verified_at, now()) else email_verified_at end
   where account_id = me;
  update auth_tokens set revoked_at = now() where account_id = me and revoked_at is null;
  return true;
end $$;

-- Deletion: what identifies the caller goes (email, handle, display name, password,
-- sessions, links to partners, subscriptions, directory listings); the ledger, clicks
-- and payouts stay as they are, naming an anonymous account, so that every journal
-- still balances and `merci audit` holds. What the balance or earnings still hold stays
-- on the account's ledger accounts, which nobody can spend again (docs/api.md).
create function merci_delete_account() returns boolean
language plpgsql security definer set search_path = public, pg_temp as $$
declare
  me bigint := merci_own_account();
begin
  if me is null then
    return false;
  end if;
  update account_private
     set email = 'deleted-' || me || '@deleted.invalid', password_hash = '!deleted', email_verified_at = null,
         is_tenant_admin = false, is_platform_admin = false, deleted_at = now()
   where account_id = me;
  update accounts set handle = 'deleted_' || me, display_name = '' where id = me;
  update auth_tokens set revoked_at = now() where account_id = me and revoked_at is null;
  update embed_grants set used_at = now() where account_id = me and used_at is null;
  update linked_accounts set revoked_at = now(), updated_at = now() where account_id = me and revoked_at is null;
  update subscriptions set status = 'cancelled', updated_at = now()
   where supporter_id = me and status in ('active', 'paused');
  update sites set listed = false, updated_at = now() where owner_id = me and listed;
  -- Mail not yet sent to the address is not sent any more.
  delete from mail_outbox where account_id = me and sent_at is null;
  return true;
end $$;

-- A top-up needs a verified email too (the API checks first; this holds whatever it does):
-- 0016's function, renamed, is what the new one calls once the caller is verified.
alter function merci_dev_topup(bigint, text, text) rename to merci_dev_topup_unverified;
revoke execute on function merci_dev_topup_unverified(bigint, text, text) from merci_app, public;
create function merci_dev_topup(p_amount bigint, p_currency text, p_reference text) returns boolean
language plpgsql security definer set search_path = public, pg_temp as $$
begin
  if not exists (select 1 from account_private p
                  where p.account_id = merci_own_account() and p.email_verified_at is not null) then
    raise exception 'verify your email address before topping up' using errcode = 'insufficient_privilege';
  end if;
  return merci_dev_topup_unverified(p_amount, p_currency, p_reference);
end $$;
revoke execute on function merci_dev_topup(bigint, text, text) from public;
grant execute on function merci_dev_topup(bigint, text, text) to merci_app;

revoke execute on function merci_dev_mailbox(text, integer), merci_own_account(), merci_verify_email(text),
  merci_set_password(text, boolean), merci_delete_account() from public;
grant execute on function merci_dev_mailbox(text, integer), merci_verify_email(text), merci_set_password(text, boolean),
  merci_delete_account() to merci_app;

-- ---------------------------------------------------------------- the broker

-- The API sends `mail.send` (on queue `mail`) after the transaction that wrote the mail:
-- merci_enqueue (0014) again, with that actor added to what it takes.
create or replace function merci_enqueue(p_queue_name text, p_message_id uuid, p_message jsonb) returns void
language plpgsql security definer set search_path = public, pg_temp as $$
declare
  allowed constant text[] := array['clicks clicks.ingest', 'clicks subscriptions.materialize',
                                   'directory directory.verify_site', 'directory things.discover',
                                   'money payouts.send', 'webhooks webhooks.deliver', 'mail mail.send'];
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
    where (q.queue_name || ' ' || (q.message->>'actor_name')) = any(allowed);
  get diagnostics written = row_count;
  if written = 0 then
    raise exception 'message % exists and is not the API''s to replace', p_message_id
      using errcode = 'insufficient_privilege';
  end if;
  perform pg_notify('dramatiq.' || p_queue_name || '.enqueue', '');
end $$;
