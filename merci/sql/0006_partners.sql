-- Partner platforms: OAuth clients, consent codes and the supporters' linked
-- accounts; one-time grants that hand a login to an embedded button; owner
-- discovery of auto-submitted things; webhook endpoints, their events (an outbox
-- written by triggers in the very transaction that made the change), deliveries
-- and attempts.

-- ---------------------------------------------------------------- OAuth 2

-- A partner's OAuth client. The consent page names it to supporters of every
-- tenant, so clients are readable by all; the secret is stored hashed.
create table oauth_clients (
    id             bigint generated always as identity primary key,
    tenant_id      bigint not null references tenants(id),
    client_id      text not null unique check (client_id ~ '^mc_[0-9]+_[A-Za-z0-9_-]{16,64}$'),
    name           text not null check (length(name) between 1 and 100),
    secret_hash    bytea not null,
    redirect_uris  text[] not null check (cardinality(redirect_uris) between 1 and 10),
    created_by     bigint references accounts(id),
    created_at     timestamptz not null default now(),
    revoked_at     timestamptz
);
create index on oauth_clients (tenant_id);

-- An authorization code: written when a supporter consents (in the supporter's
-- scope), redeemed once by the client's tenant at the token endpoint.
create table oauth_codes (
    code_hash       bytea primary key,
    tenant_id       bigint not null references tenants(id),  -- the client's tenant
    client_pk       bigint not null references oauth_clients(id),
    account_id      bigint not null references accounts(id), -- the supporter who consented
    redirect_uri    text not null,
    scopes          text[] not null check (cardinality(scopes) >= 1),
    code_challenge  text not null check (code_challenge ~ '^[A-Za-z0-9_-]{43}$'),  -- PKCE S256
    expires_at      timestamptz not null,
    used_at         timestamptz,
    created_at      timestamptz not null default now()
);
create index on oauth_codes (tenant_id, account_id);

-- A supporter's account linked to a partner: what lets the partner submit clicks
-- on the supporter's behalf. One per (partner, supporter); re-consenting renews it.
create table linked_accounts (
    id          bigint generated always as identity primary key,
    tenant_id   bigint not null references tenants(id),   -- the partner
    account_id  bigint not null references accounts(id),  -- the supporter, of any tenant
    client_pk   bigint not null references oauth_clients(id),
    scopes      text[] not null check (cardinality(scopes) >= 1),
    token_hash  bytea not null unique,
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now(),
    revoked_at  timestamptz,
    unique (tenant_id, account_id)
);
create index on linked_accounts (account_id);

-- Whether the current tenant holds a code the supporter consented to and that
-- was just redeemed: the only way a partner may create or renew a link.
create or replace function merci_consented(p_tenant bigint, p_account bigint) returns boolean
language sql stable as $$
  select exists (select 1 from oauth_codes c
                  where c.tenant_id = p_tenant and c.account_id = p_account
                    and c.used_at is not null and c.used_at >= now() - interval '1 minute')
$$;

-- ---------------------------------------------------------------- embeds

-- A one-time grant: the login popup (first-party) hands it to the button's iframe
-- (third-party), which trades it for a partitioned session cookie.
create table embed_grants (
    code_hash   bytea primary key,
    tenant_id   bigint not null references tenants(id),   -- the supporter's home tenant
    account_id  bigint not null references accounts(id),
    expires_at  timestamptz not null,
    used_at     timestamptz,
    created_at  timestamptz not null default now()
);

-- Owner discovery of a thing auto-submitted by URL: the worker checks the owner
-- named by the button (a verified site) or reads the page's rel="payment" link.
create table thing_discovery (
    thing_id    bigint primary key references things(id),
    tenant_id   bigint not null references tenants(id),
    owner_hint  bigint references accounts(id),
    status      text not null default 'pending' check (status in ('pending', 'found', 'none', 'failed')),
    method      text check (method in ('verified_site', 'payment_link')),
    owner_id    bigint references accounts(id),
    error       text check (length(error) <= 1000),
    created_at  timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);
create index on thing_discovery (created_at) where status = 'pending';

-- ---------------------------------------------------------------- webhooks

create table webhook_endpoints (
    id           bigint generated always as identity primary key,
    tenant_id    bigint not null references tenants(id),
    url          text not null check (url ~ '^https?://' and length(url) <= 2048),
    events       text[] not null check (
        cardinality(events) >= 1 and events <@ array['click.accepted', 'month.closed', 'payout.sent']::text[]),
    secret       text not null check (length(secret) >= 32),
    description  text not null default '' check (length(description) <= 200),
    active       boolean not null default true,
    created_at   timestamptz not null default now(),
    disabled_at  timestamptz
);
create index on webhook_endpoints (tenant_id);

-- The outbox: one row per event per tenant that had a subscribed endpoint when it
-- happened; the workers fan each out into deliveries.
create table webhook_events (
    id             bigint generated always as identity primary key,
    tenant_id      bigint not null references tenants(id),
    type           text not null check (type in ('click.accepted', 'month.closed', 'payout.sent')),
    payload        jsonb not null,
    created_at     timestamptz not null default now(),
    dispatched_at  timestamptz
);
create index on webhook_events (id) where dispatched_at is null;
create index on webhook_events (tenant_id, id);

create table webhook_deliveries (
    id               bigint generated always as identity primary key,
    tenant_id        bigint not null references tenants(id),
    event_id         bigint not null references webhook_events(id),
    endpoint_id      bigint not null references webhook_endpoints(id),
    replay_of        bigint references webhook_deliveries(id),
    status           text not null default 'pending' check (status in ('pending', 'delivered', 'failed')),
    attempts         integer not null default 0 check (attempts >= 0),
    created_at       timestamptz not null default now(),
    enqueued_at      timestamptz,
    last_attempt_at  timestamptz,
    delivered_at     timestamptz,
    last_error       text
);
-- An event reaches an endpoint once (replays aside): a re-run dispatch adds nothing.
create unique index on webhook_deliveries (event_id, endpoint_id) where replay_of is null;
create index on webhook_deliveries (endpoint_id, id);
create index on webhook_deliveries (created_at) where enqueued_at is null;

create table webhook_attempts (
    id           bigint generated always as identity primary key,
    tenant_id    bigint not null references tenants(id),
    delivery_id  bigint not null references webhook_deliveries(id),
    attempt      integer not null check (attempt >= 1),
    at           timestamptz not null default now(),
    status_code  integer,
    error        text check (length(error) <= 1000),
    duration_ms  integer not null check (duration_ms >= 0)
);
create index on webhook_attempts (delivery_id);

-- The outbox triggers run as the tables' owner (security definer): whichever role
-- makes the change, its events are written, and no role needs to write events itself.
--
-- click.accepted: for the thing's tenant, and for the partner that submitted the
-- click (its idempotency keys are namespaced `p<tenant>:`). One statement-level
-- trigger over the inserted rows; nothing to do (one cheap probe) without endpoints.
create or replace function merci_webhook_clicks() returns trigger language plpgsql
security definer set search_path = public, pg_temp as $$
begin
  if not exists (select 1 from webhook_endpoints where active and 'click.accepted' = any(events)) then
    return null;
  end if;
  insert into webhook_events (tenant_id, type, payload)
  select r.recipient, 'click.accepted',
         jsonb_build_object('thing_id', r.thing_id, 'url', r.url, 'period', to_char(r.period, 'YYYY-MM'),
                            'accepted_at', r.accepted_at, 'source', r.source)
         || case when r.recipient in (r.home_tenant, r.partner) then
              jsonb_build_object('supporter_id', r.supporter_id,
                                 'idempotency_key', case when r.recipient = r.partner
                                   then substr(r.idempotency_key, strpos(r.idempotency_key, ':') + 1) end)
            else '{}'::jsonb end
    from (
      select distinct x.recipient, n.thing_id, t.url, n.period, n.accepted_at, n.source, n.supporter_id,
             n.idempotency_key, n.tenant_id as home_tenant, p.partner, n.id
        from new_clicks n
        join things t on t.id = n.thing_id
        cross join lateral (select case when n.source = 'partner' and n.idempotency_key ~ '^p[0-9]{1,18}:'
                                        then substring(n.idempotency_key from '^p([0-9]+):')::bigint end
                               as partner) p
        cross join lateral (values (t.tenant_id), (p.partner)) as x(recipient)
       where x.recipient is not null
    ) r
   where exists (select 1 from webhook_endpoints e
                  where e.tenant_id = r.recipient and e.active and 'click.accepted' = any(e.events))
   order by r.id, r.recipient;
  return null;
end $$;
create trigger clicks_webhooks after insert on clicks
  referencing new table as new_clicks
  for each statement execute function merci_webhook_clicks();

-- month.closed: every tenant with a subscribed endpoint, once the close is done.
create or replace function merci_webhook_month_closed() returns trigger language plpgsql
security definer set search_path = public, pg_temp as $$
begin
  insert into webhook_events (tenant_id, type, payload)
  select distinct e.tenant_id, 'month.closed', jsonb_build_object('period', to_char(new.period, 'YYYY-MM'))
    from webhook_endpoints e where e.active and 'month.closed' = any(e.events)
   order by e.tenant_id;
  return null;
end $$;
create trigger month_closes_webhooks after update of status on month_closes
  for each row when (new.status = 'done' and old.status is distinct from 'done')
  execute function merci_webhook_month_closed();

-- payout.sent: deferred to commit, when the payout journal's entries exist.
create or replace function merci_webhook_payout() returns trigger language plpgsql
security definer set search_path = public, pg_temp as $$
begin
  insert into webhook_events (tenant_id, type, payload)
  select new.tenant_id, 'payout.sent',
         jsonb_build_object('journal_id', new.id, 'creator_id', c.owner_account_id,
                            'amount', p.amount, 'currency', p.currency)
    from (select sum(e.amount)::bigint as amount, min(e.currency) as currency
            from entries e join ledger_accounts la on la.id = e.ledger_account_id
           where e.journal_id = new.id and la.kind = 'payout') p
    left join lateral (select la.owner_account_id from entries e
                         join ledger_accounts la on la.id = e.ledger_account_id
                        where e.journal_id = new.id and la.kind = 'creator' limit 1) c on true
   where p.amount is not null
     and exists (select 1 from webhook_endpoints e
                  where e.tenant_id = new.tenant_id and e.active and 'payout.sent' = any(e.events));
  return null;
end $$;
create constraint trigger journals_payout_webhooks after insert on journals
  deferrable initially deferred
  for each row when (new.kind = 'payout') execute function merci_webhook_payout();

-- ---------------------------------------------------------------- answers across tenants

-- submitClicks runs as the partner, yet a linked supporter's balance and clicks
-- live in the supporter's home tenant. This answers the API's cheap checks for
-- supporters linked to the calling tenant only (nothing at all for the others).
create or replace function merci_partner_precheck(
    p_supporters bigint[], p_things bigint[], p_urls text[], p_keys text[], p_period date, p_currency text
) returns table (i integer, linked boolean, home_tenant bigint, thing_id bigint, owner_id bigint,
                 balance bigint, clicked boolean, replayed boolean)
language sql stable security definer set search_path = public, pg_temp as $$
  with input as (
    select x.i::integer as i, x.supporter_id, x.thing_id, x.url, x.key
      from unnest(p_supporters, p_things, p_urls, p_keys) with ordinality as x(supporter_id, thing_id, url, key, i)
  ),
  linked as (
    select i.*, a.tenant_id as home_tenant
      from input i
      join linked_accounts l on l.tenant_id = merci_tenant() and l.account_id = i.supporter_id
                            and l.revoked_at is null and 'clicks:write' = any(l.scopes)
      join accounts a on a.id = i.supporter_id
  ),
  balances as (
    select la.owner_account_id as supporter_id, coalesce(sum(e.amount), 0)::bigint as balance
      from ledger_accounts la left join entries e on e.ledger_account_id = la.id
     where la.kind = 'supporter' and la.currency = p_currency
       and la.owner_account_id in (select supporter_id from linked)
     group by la.owner_account_id
  )
  select i.i, l.i is not null, l.home_tenant, t.id, t.owner_id,
         case when l.i is not null then coalesce(b.balance, 0) end,
         case when l.i is not null then exists (select 1 from clicks c where c.supporter_id = l.supporter_id
                                                  and c.thing_id = t.id and c.period = p_period) end,
         case when l.i is not null then exists (select 1 from clicks c where c.supporter_id = l.supporter_id
                                                  and c.idempotency_key = l.key) end
    from input i
    left join linked l on l.i = i.i
    left join things t on l.i is not null
                      and t.id = coalesce(i.thing_id, (select u.id from things u where u.url = i.url))
    left join balances b on b.supporter_id = l.supporter_id
   order by i.i
$$;

-- Analytics: what the given things of the calling tenant earned at a month's
-- close (to their creators, or into escrow while unclaimed). Journals belong to
-- the supporters' tenants, which the partner cannot read; the sums it may.
create or replace function merci_thing_earnings(p_period date, p_things bigint[])
returns table (thing_id bigint, amount bigint)
language sql stable security definer set search_path = public, pg_temp as $$
  select e.thing_id, sum(e.amount)::bigint
    from things t
    join ledger_accounts la on (la.kind = 'creator' and la.owner_account_id = t.owner_id)
                            or (la.kind = 'escrow' and la.thing_id = t.id)
    join entries e on e.ledger_account_id = la.id and e.thing_id = t.id and e.amount > 0
    join journals j on j.id = e.journal_id and j.kind = 'month_close' and j.period = p_period
   where t.id = any(p_things) and t.tenant_id = merci_tenant()
   group by e.thing_id
$$;

revoke execute on function merci_partner_precheck(bigint[], bigint[], text[], text[], date, text) from public;
revoke execute on function merci_thing_earnings(date, bigint[]) from public;
grant execute on function merci_partner_precheck(bigint[], bigint[], text[], text[], date, text) to merci_app;
grant execute on function merci_thing_earnings(date, bigint[]) to merci_app;
grant execute on function merci_consented(bigint, bigint) to merci_app, merci_system;

-- ---------------------------------------------------------------- grants and RLS

grant select, insert, update on oauth_clients, oauth_codes, linked_accounts, embed_grants, thing_discovery to merci_app;
-- The API never reads an endpoint's signing secret back: it is shown once, at creation.
grant select (id, tenant_id, url, events, description, active, created_at, disabled_at) on webhook_endpoints
  to merci_app;
grant insert, update on webhook_endpoints to merci_app;
grant select on webhook_events, webhook_attempts to merci_app;
grant select, insert on webhook_deliveries to merci_app;
grant update (enqueued_at) on webhook_deliveries to merci_app;  -- a replay, once handed to the broker
grant select, insert, update on oauth_clients, oauth_codes, linked_accounts, embed_grants, thing_discovery,
  webhook_endpoints, webhook_events, webhook_deliveries, webhook_attempts to merci_system;
grant usage on all sequences in schema public to merci_app, merci_system;

do $$
declare t text;
begin
  foreach t in array array['oauth_clients', 'oauth_codes', 'linked_accounts', 'embed_grants', 'thing_discovery',
                           'webhook_endpoints', 'webhook_events', 'webhook_deliveries', 'webhook_attempts']
  loop
    execute format('alter table %I enable row level security', t);
    execute format('alter table %I force row level security', t);
    execute format('create policy system_all on %I to merci_system, current_user using (true) with check (true)', t);
  end loop;
  foreach t in array array['embed_grants', 'thing_discovery', 'webhook_endpoints', 'webhook_events',
                           'webhook_deliveries', 'webhook_attempts']
  loop
    execute format('create policy tenant_rows on %I to merci_app
                      using (tenant_id = merci_tenant()) with check (tenant_id = merci_tenant())', t);
  end loop;
end $$;

create policy read_all on oauth_clients for select to merci_app using (true);
create policy own_tenant_insert on oauth_clients for insert to merci_app with check (tenant_id = merci_tenant());
create policy own_tenant_update on oauth_clients for update to merci_app
  using (tenant_id = merci_tenant()) with check (tenant_id = merci_tenant());

-- A supporter consents for themselves only; the client's tenant redeems.
create policy consent_insert on oauth_codes for insert to merci_app with check (account_id = merci_account());
create policy client_rows on oauth_codes for select to merci_app using (tenant_id = merci_tenant());
create policy client_update on oauth_codes for update to merci_app
  using (tenant_id = merci_tenant()) with check (tenant_id = merci_tenant());

-- The partner sees its links and the supporter theirs; either may revoke; only a
-- redeemed consent creates or renews one.
create policy party_rows on linked_accounts for select to merci_app
  using (tenant_id = merci_tenant() or account_id = merci_account());
create policy consented_insert on linked_accounts for insert to merci_app
  with check (tenant_id = merci_tenant() and merci_consented(tenant_id, account_id));
create policy party_update on linked_accounts for update to merci_app
  using (tenant_id = merci_tenant() or account_id = merci_account())
  with check (revoked_at is not null or (tenant_id = merci_tenant() and merci_consented(tenant_id, account_id)));
