-- Real money in and out (issue 19): card top-ups through Stripe Checkout, Stripe's
-- webhooks, refunds, disputes, the creator's payout method (Stripe Connect or a SEPA
-- credit transfer) and SEPA batches.
--
-- Money still moves only as merci_system (the workers): the API writes requests
-- (a top-up, a refund, a payout method) and Stripe's events, never a journal. A
-- request names an amount; the worker decides, under the supporter's lock, whether the
-- money is there.

-- ---------------------------------------------------------------- the ledger's new kinds

-- frozen        (owner: a supporter) the part of their balance a dispute holds
-- provider_fee  the outside world: what a payment provider kept (its fees)
-- platform_cost the platform's own pocket: it pays the providers' fees and a lost
--               dispute's shortfall; negative is its loss, in plain sight
alter table ledger_accounts drop constraint ledger_accounts_kind_check;
alter table ledger_accounts add constraint ledger_accounts_kind_check
  check (kind in ('supporter', 'creator', 'escrow', 'platform_fee', 'partner_share', 'external', 'payout',
                  'frozen', 'provider_fee', 'platform_cost'));
alter table ledger_accounts drop constraint ledger_accounts_check;
alter table ledger_accounts add constraint ledger_accounts_check
  check ((kind in ('supporter', 'creator', 'payout', 'frozen')) = (owner_account_id is not null));

alter table journals drop constraint journals_kind_check;
alter table journals add constraint journals_kind_check
  check (kind in ('topup', 'month_close', 'escrow_release', 'escrow_return', 'payout', 'correction',
                  'provider_fee', 'refund', 'refund_reversal', 'dispute_freeze', 'dispute_won', 'dispute_lost'));

-- ---------------------------------------------------------------- top-ups

-- A card top-up: written by the API as the supporter (`created`), given its Checkout
-- Session (`open`), and credited by a worker on Stripe's signed event (`succeeded`), or
-- `failed` / `expired`. The balance moves only with `succeeded`.
create table topups (
    id                  bigserial primary key,
    tenant_id           bigint not null references tenants(id),
    account_id          bigint not null references accounts(id),
    amount              bigint not null check (amount > 0),
    currency            text not null,
    provider            text not null check (provider in ('stripe')),
    idempotency_key     text not null check (length(idempotency_key) between 1 and 100),
    status              text not null default 'created'
                        check (status in ('created', 'open', 'succeeded', 'failed', 'expired')),
    checkout_session_id text unique check (length(checkout_session_id) <= 255),
    checkout_url        text check (length(checkout_url) <= 2000),
    payment_intent_id   text unique check (length(payment_intent_id) <= 255),
    fee                 bigint check (fee >= 0),
    journal_id          bigint references journals(id),
    reason              text check (length(reason) <= 500),
    created_at          timestamptz not null default now(),
    settled_at          timestamptz,
    unique (account_id, idempotency_key),
    check ((status = 'succeeded') = (journal_id is not null))
);
create index on topups (account_id, id desc);

-- ---------------------------------------------------------------- Stripe's events

-- Every event Stripe sent us whose signature held, once (the primary key: a replay
-- stores nothing), with the raw body and its signature: the worker that applies it
-- verifies the signature again, so a row written by anything but the webhook (the API
-- role, were it ever abused) moves no money.
create table stripe_events (
    id            text primary key check (id ~ '^evt_[A-Za-z0-9_]{1,200}$'),
    type          text not null check (length(type) between 1 and 100),
    livemode      boolean not null,
    created       timestamptz not null,    -- the event's own time (Stripe's `created`)
    payload       text not null check (length(payload) <= 1000000),
    signature     text not null check (length(signature) <= 2000),
    received_at   timestamptz not null default now(),
    attempts      integer not null default 0,
    processed_at  timestamptz,
    outcome       text check (length(outcome) <= 500)
);
create index stripe_events_unprocessed on stripe_events (received_at) where processed_at is null;

-- ---------------------------------------------------------------- refunds

-- A supporter's unspent balance back to the card a top-up came from. `requested` by the
-- API; a worker posts the `refund` journal (at most the unspent balance, at most what
-- is left of the top-up) and asks Stripe (`pending`, then `succeeded`); a refusal
-- `failed`, and a refusal after the journal posts the reversal.
create table refunds (
    id                  bigserial primary key,
    tenant_id           bigint not null references tenants(id),
    account_id          bigint not null references accounts(id),
    topup_id            bigint not null references topups(id),
    amount              bigint not null check (amount > 0),
    currency            text not null,
    idempotency_key     text not null check (length(idempotency_key) between 1 and 100),
    status              text not null default 'requested'
                        check (status in ('requested', 'pending', 'succeeded', 'failed')),
    stripe_refund_id    text unique check (length(stripe_refund_id) <= 255),
    journal_id          bigint references journals(id),
    reversal_journal_id bigint references journals(id),
    reason              text check (length(reason) <= 500),
    created_at          timestamptz not null default now(),
    settled_at          timestamptz,
    unique (account_id, idempotency_key),
    check (status not in ('pending', 'succeeded') or journal_id is not null),
    check ((status = 'failed') = (reason is not null))
);
create index on refunds (account_id, id desc);
create index on refunds (topup_id);

-- ---------------------------------------------------------------- disputes

-- A chargeback on a top-up's payment: its opening freezes what is still unspent of the
-- disputed amount; won, that goes back to the balance; lost, it goes to the card
-- holder and the platform pays what was already spent (distributed money stays put).
create table disputes (
    id               text primary key check (length(id) <= 255),
    tenant_id        bigint not null references tenants(id),
    account_id       bigint not null references accounts(id),
    topup_id         bigint not null references topups(id),
    amount           bigint not null check (amount > 0),
    currency         text not null,
    status           text not null default 'open' check (status in ('open', 'won', 'lost')),
    frozen           bigint not null check (frozen >= 0),
    freeze_journal_id bigint references journals(id),
    close_journal_id bigint references journals(id),
    created_at       timestamptz not null default now(),
    closed_at        timestamptz,
    check ((status = 'open') = (closed_at is null))
);
create index on disputes (account_id);

-- ---------------------------------------------------------------- payout methods

-- How a creator is paid: `dev` (development and tests), `stripe` (a Connect Express
-- account Merci created for them) or `sepa` (a bank transfer to their IBAN). The API
-- writes the method and the bank details; the Connect account's id only through
-- merci_set_stripe_account (the one Merci created, once), and its status only the workers.
create table payout_methods (
    account_id         bigint primary key references accounts(id),
    tenant_id          bigint not null references tenants(id),
    method             text not null check (method in ('dev', 'stripe', 'sepa')),
    iban               text check (iban ~ '^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$'),
    bic                text check (bic ~ '^[A-Z0-9]{8}([A-Z0-9]{3})?$'),
    holder             text check (length(holder) between 1 and 70),
    stripe_account_id  text unique check (stripe_account_id ~ '^acct_[A-Za-z0-9]{1,100}$'),
    stripe_details_submitted boolean not null default false,
    stripe_payouts_enabled   boolean not null default false,
    updated_at         timestamptz not null default now(),
    check (method <> 'sepa' or (iban is not null and holder is not null))
);

create function merci_set_stripe_account(p_stripe_account text) returns boolean
language plpgsql security definer set search_path = public, pg_temp as $$
declare
  me bigint := merci_own_account();
begin
  if me is null then
    raise exception 'a Connect account is for the signed-in account' using errcode = 'insufficient_privilege';
  end if;
  insert into payout_methods (account_id, tenant_id, method, stripe_account_id)
  values (me, merci_tenant(), 'stripe', p_stripe_account)
  on conflict (account_id) do update set stripe_account_id = excluded.stripe_account_id, updated_at = now()
   where payout_methods.stripe_account_id is null;
  return exists (select 1 from payout_methods where account_id = me and stripe_account_id = p_stripe_account);
end $$;
revoke execute on function merci_set_stripe_account(text) from public;
grant execute on function merci_set_stripe_account(text) to merci_app;

-- ---------------------------------------------------------------- SEPA batches

-- A pain.001 file of pending `sepa` payouts, written by the operator (`merci sepa
-- batch`) and confirmed once the bank has taken it (`merci sepa confirm`): only then
-- are its payouts sent (their journals posted).
create table sepa_batches (
    id            bigserial primary key,
    currency      text not null,
    message_id    text not null unique,
    payouts       integer not null check (payouts > 0),
    total         bigint not null check (total > 0),
    xml           text not null,
    status        text not null default 'written' check (status in ('written', 'confirmed', 'cancelled')),
    created_at    timestamptz not null default now(),
    confirmed_at  timestamptz
);
create table sepa_batch_items (
    payout_id     bigint primary key references payouts(id),
    batch_id      bigint not null references sepa_batches(id),
    iban          text not null,
    bic           text,
    holder        text not null,
    end_to_end_id text not null unique
);
create index on sepa_batch_items (batch_id);

-- ---------------------------------------------------------------- privileges

do $$
declare t text;
begin
  foreach t in array array['topups', 'stripe_events', 'refunds', 'disputes', 'payout_methods', 'sepa_batches',
                           'sepa_batch_items']
  loop
    execute format('alter table %I enable row level security', t);
    execute format('alter table %I force row level security', t);
    execute format('create policy system_all on %I to merci_system, current_user using (true) with check (true)', t);
    execute format('grant select, insert, update on %I to merci_system', t);
  end loop;
end $$;
grant delete on sepa_batch_items to merci_system;
grant usage on sequence topups_id_seq, refunds_id_seq, sepa_batches_id_seq to merci_system;

-- A supporter sees and starts their own top-ups, and gives a new one its Checkout Session.
create policy own_rows on topups for select to merci_app
  using (tenant_id = merci_tenant() and account_id = merci_account());
create policy own_start on topups for insert to merci_app
  with check (tenant_id = merci_tenant() and account_id = merci_account() and status = 'created'
              and journal_id is null and payment_intent_id is null and fee is null);
create policy own_session on topups for update to merci_app
  using (tenant_id = merci_tenant() and account_id = merci_account() and status = 'created')
  with check (tenant_id = merci_tenant() and account_id = merci_account() and status in ('created', 'open'));
grant select, insert (tenant_id, account_id, amount, currency, provider, idempotency_key) on topups to merci_app;
grant update (checkout_session_id, checkout_url, status) on topups to merci_app;
grant usage on sequence topups_id_seq to merci_app;

-- Stripe's events: the webhook writes them (no RETURNING: it reads none back).
create policy received on stripe_events for insert to merci_app
  with check (processed_at is null and outcome is null and attempts = 0);
grant insert (id, type, livemode, created, payload, signature) on stripe_events to merci_app;

create policy own_rows on refunds for select to merci_app
  using (tenant_id = merci_tenant() and account_id = merci_account());
create policy own_request on refunds for insert to merci_app
  with check (tenant_id = merci_tenant() and account_id = merci_account() and status = 'requested'
              and journal_id is null and stripe_refund_id is null);
grant select, insert (tenant_id, account_id, topup_id, amount, currency, idempotency_key) on refunds to merci_app;
grant usage on sequence refunds_id_seq to merci_app;

create policy own_rows on disputes for select to merci_app
  using (tenant_id = merci_tenant() and account_id = merci_account());
grant select on disputes to merci_app;

create policy own_rows on payout_methods for all to merci_app
  using (tenant_id = merci_tenant() and account_id = merci_account())
  with check (tenant_id = merci_tenant() and account_id = merci_account());
grant select, insert (account_id, tenant_id, method, iban, bic, holder),
  update (method, iban, bic, holder, updated_at) on payout_methods to merci_app;

-- ---------------------------------------------------------------- the broker

-- The API sends Stripe's stored events (stripe.process_event) and refunds (refunds.send)
-- to the money workers: merci_enqueue (0022) again, with those two actors added.
create or replace function merci_enqueue(p_queue_name text, p_message_id uuid, p_message jsonb) returns void
language plpgsql security definer set search_path = public, pg_temp as $$
declare
  allowed constant text[] := array['clicks clicks.ingest', 'clicks subscriptions.materialize',
                                   'directory directory.verify_site', 'directory things.discover',
                                   'money payouts.send', 'webhooks webhooks.deliver', 'mail mail.send',
                                   'money stripe.process_event', 'money refunds.send'];
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
