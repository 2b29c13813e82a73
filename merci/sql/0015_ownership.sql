-- Ownership by proof. A thing belongs to a creator only when one of their verified
-- sites covers its canonical URL; anything else is unclaimed and its money waits in
-- escrow. The database decides it, not the callers: a trigger names the owner of every
-- new thing, every change of owner is checked against the scopes, and only SECURITY
-- DEFINER functions (which apply the rule, never a caller's wish) move a thing.
--
-- * A canonical key per page (`things.canon`): no scheme (http and https are one page),
--   no `www.`, no trailing slash. merci.urls.normalize_url has already lowercased the
--   host, dropped default ports, fragments and tracking parameters, decoded unreserved
--   percent-escapes and resolved dot segments. merci.urls.canonical_key mirrors this.
-- * A verified site's scope (`sites.verified_scope`): its canonical origin and path
--   prefix, ending in '/'. The host root only when proven at the root (the well-known
--   file, or a meta tag / payment link on the root page); a path proves that path.
-- * The owner of a URL: the verified scope covering it with the longest prefix (a
--   user's directory on a shared host beats the host), the earliest proof on a tie.

create or replace function merci_canon(url text) returns text
language sql immutable parallel safe strict as $$
  select rtrim(m[1], '/') || coalesce('?' || nullif(m[2], ''), '')
    from regexp_match(url, '^https?://(?:www\.(?=[^/?]*\.))?([^?]*)(?:\?(.*))?$') m
$$;

-- 'host/a/b?q' -> {'host/a/b/', 'host/a/', 'host/'}: the scopes that could cover it.
create or replace function merci_scope_prefixes(canon text) returns text[]
language sql immutable parallel safe strict as $$
  select array_agg(left(x.p, i) order by i desc)
    from (select split_part(canon, '?', 1) || '/' as p) x, generate_series(1, length(x.p)) i
   where substr(x.p, i, 1) = '/'
$$;

-- Whether a scope ('host/a/') covers a canonical URL: the page itself ('host/a', with
-- or without a query) or anything below it. Plain SQL, so the planner inlines it.
create or replace function merci_covers(scope text, canon text) returns boolean
language sql immutable parallel safe strict as $$
  select starts_with(canon, scope) or canon = left(scope, -1) or starts_with(canon, left(scope, -1) || '?')
$$;

-- What a verified site proves.
create or replace function merci_site_scope(url text, method text) returns text
language sql immutable parallel safe as $$
  select case when method = 'well_known' then split_part(c, '/', 1) || '/' else c || '/' end
    from (select split_part(merci_canon(url), '?', 1) as c) x
$$;

-- ---------------------------------------------------------------- columns

alter table sites add column verified_scope text collate "C";
update sites set verified_scope = merci_site_scope(url, verification_method) where verified_at is not null;
alter table sites add constraint sites_scope_when_verified check ((verified_at is null) = (verified_scope is null));
create index sites_verified_scope on sites (verified_scope) where verified_scope is not null;

-- Pages linked in several forms before this migration (http and https, with and without
-- `www.`) keep their history; the first one is the page from now on, the others keep a
-- key no lookup can produce ('#' never survives normalization).
alter table things add column canon text collate "C";
update things t set canon = merci_canon(t.url) || case when d.rank > 1 then '#' || t.id else '' end
  from (select id, row_number() over (partition by merci_canon(url) order by id) as rank from things) d
 where d.id = t.id;
alter table things alter column canon set not null;
alter table things add constraint things_canon_key unique (canon);
alter table things drop constraint things_url_key;

-- Accounts caught owning what they could not prove (before this migration, anyone
-- could submit any URL): kept for review, never deleted.
create table account_flags (
    id          bigint generated always as identity primary key,
    account_id  bigint not null references accounts(id),
    tenant_id   bigint not null references tenants(id),
    kind        text not null check (kind in ('squatted')),
    thing_id    bigint references things(id),
    detail      text not null default '' check (length(detail) <= 1000),
    created_at  timestamptz not null default now()
);
create index on account_flags (account_id);

-- ---------------------------------------------------------------- the rule

-- Sees every tenant's verified sites (a site is private to its tenant until listed, yet
-- it proves ownership for everyone).
create or replace function merci_scope_owner(p_canon text, out owner_id bigint, out site_id bigint)
language sql stable security definer set search_path = public, pg_temp as $$
  select s.owner_id, s.id from sites s
   where s.verified_scope = any(merci_scope_prefixes(p_canon))
   order by length(s.verified_scope) desc, s.verified_at, s.id
   limit 1
$$;

-- Whether the account proved a scope covering the URL: what "one's own thing" means at
-- every step (click, subscription, close), whoever the thing is assigned to.
create or replace function merci_owns(p_account bigint, p_canon text) returns boolean
language sql stable security definer set search_path = public, pg_temp as $$
  select exists (select 1 from sites s where s.owner_id = p_account and s.verified_scope is not null
                    and merci_covers(s.verified_scope, p_canon))
$$;

-- Things a scope covers, by ranges of the canon index (C collation: '/' + 1 = '0',
-- '?' + 1 = '@'), so a scope's things are found without a scan.
create or replace function merci_things_under(p_scope text) returns setof bigint
language sql stable security definer set search_path = public, pg_temp as $$
  select id from things where canon >= p_scope and canon < left(p_scope, -1) || '0'
  union all
  select id from things where canon = left(p_scope, -1)
  union all
  select id from things where canon >= left(p_scope, -1) || '?' and canon < left(p_scope, -1) || '@'
$$;

-- Every ownership change takes this lock (7310005, 0) exclusively; a month-close shard
-- holds it shared while it splits and posts, so a shard never reads a thing unclaimed
-- and posts its escrow after a claim has already released that escrow (the cents would
-- strand in the escrow of a claimed thing). New things take it shared too, so a thing
-- made while a site is being verified is either seen by the adoption or sees the scope.

-- Escrow of a claimed thing -> its owner's earnings, one journal per escrow account,
-- keyed by the account's entry count (a retry finds the same key). The one
-- implementation: claims, adoption, the workers and the scheduler's sweep call it.
--
-- Nobody is paid for their own thing, not even after the fact: the owner's own shares
-- of the months the thing waited unclaimed (their clicks on a page they had not proven
-- yet) go back to their balance, not to their earnings. The escrow holds what came in
-- since it was last emptied (by a release or such a refund), less the months already
-- returned to their supporters; the owner's part of that is what their own close
-- journals put in.
create or replace function merci_release_escrow(p_thing bigint) returns bigint
language plpgsql security definer set search_path = public, pg_temp as $$
declare
  th record;
  esc record;
  creator bigint;
  refund_to record;
  jid bigint;
  own bigint;
  moved bigint := 0;
begin
  select owner_id, tenant_id into th from things where id = p_thing for update;
  if not found or th.owner_id is null then
    return 0;
  end if;
  for esc in
    select la.id, la.tenant_id, la.currency, coalesce(sum(e.amount), 0)::bigint as balance, count(e.id) as n
      from ledger_accounts la left join entries e on e.ledger_account_id = la.id
     where la.kind = 'escrow' and la.thing_id = p_thing
     group by la.id order by la.id
  loop
    continue when esc.balance <= 0;
    select coalesce(sum(e.amount), 0)::bigint into own
      from entries e join journals j on j.id = e.journal_id
     where e.ledger_account_id = esc.id and e.amount > 0 and j.kind = 'month_close'
       and j.id > coalesce((select max(x.journal_id) from entries x join journals xj on xj.id = x.journal_id
                             where x.ledger_account_id = esc.id
                               and (xj.kind = 'escrow_release' or xj.idem_key like 'escrow_own:%')), 0)
       and not exists (select 1 from escrow_returns r where r.thing_id = p_thing and r.period = j.period)
       and exists (select 1 from entries se join ledger_accounts sl on sl.id = se.ledger_account_id
                    where se.journal_id = j.id and se.amount < 0 and sl.kind = 'supporter'
                      and sl.owner_account_id = th.owner_id);
    own := least(own, esc.balance);
    if own > 0 then
      select id, tenant_id into refund_to from ledger_accounts
       where kind = 'supporter' and owner_account_id = th.owner_id and currency = esc.currency
       order by id limit 1;
      insert into journals (tenant_id, kind, idem_key, memo)
      values (th.tenant_id, 'escrow_return', 'escrow_own:' || esc.id || ':' || esc.n,
              'the owner''s own shares of thing ' || p_thing || ' back to their balance')
      on conflict (idem_key) do nothing
      returning id into jid;
      if jid is not null then
        insert into entries (journal_id, ledger_account_id, tenant_id, amount, currency, journal_tenant_id)
        values (jid, esc.id, esc.tenant_id, -own, esc.currency, th.tenant_id),
               (jid, refund_to.id, refund_to.tenant_id, own, esc.currency, th.tenant_id);
        moved := moved + own;
      end if;
    end if;
    continue when esc.balance - own <= 0;
    insert into ledger_accounts (kind, tenant_id, currency, owner_account_id)
    values ('creator', th.tenant_id, esc.currency, th.owner_id) on conflict do nothing;
    select id into creator from ledger_accounts
     where kind = 'creator' and tenant_id = th.tenant_id and currency = esc.currency
       and owner_account_id = th.owner_id and thing_id is null;
    insert into journals (tenant_id, kind, idem_key, memo)
    values (th.tenant_id, 'escrow_release', 'escrow_release:' || esc.id || ':' || esc.n,
            'escrow of thing ' || p_thing || ' released to its owner')
    on conflict (idem_key) do nothing
    returning id into jid;
    continue when jid is null;
    insert into entries (journal_id, ledger_account_id, tenant_id, amount, currency, journal_tenant_id)
    values (jid, esc.id, esc.tenant_id, -(esc.balance - own), esc.currency, th.tenant_id),
           (jid, creator, th.tenant_id, esc.balance - own, esc.currency, th.tenant_id);
    moved := moved + esc.balance - own;
  end loop;
  return moved;
end $$;

-- Give a thing to the creator its scopes name (or none), with its escrow; flags an owner
-- who held it without any proof. Returns the owner after the change.
create or replace function merci_assign_thing(p_thing bigint) returns bigint
language plpgsql security definer set search_path = public, pg_temp as $$
declare
  th record;
  so record;
begin
  perform pg_advisory_xact_lock(7310005, 0);
  select id, owner_id, site_id, canon into th from things where id = p_thing for update;
  if not found then
    return null;
  end if;
  select * into so from merci_scope_owner(th.canon);
  if so.owner_id is not distinct from th.owner_id then
    if so.site_id is distinct from th.site_id then
      update things set site_id = so.site_id where id = p_thing;
    end if;
    return th.owner_id;
  end if;
  if th.owner_id is not null and not merci_owns(th.owner_id, th.canon) then
    insert into account_flags (account_id, tenant_id, kind, thing_id, detail)
    select a.id, a.tenant_id, 'squatted', p_thing,
           'owned a thing outside every verified site of theirs; '
           || coalesce('taken over by account ' || so.owner_id, 'left unclaimed')
      from accounts a where a.id = th.owner_id;
  end if;
  -- Money already distributed stays where the ledger put it; the escrow and every
  -- future click follow the new owner.
  update things t
     set owner_id = so.owner_id, site_id = so.site_id,
         tenant_id = coalesce((select a.tenant_id from accounts a where a.id = so.owner_id), t.tenant_id),
         claimed_at = case when so.owner_id is null then null else now() end
   where t.id = p_thing;
  if so.owner_id is not null then
    perform merci_release_escrow(p_thing);
  end if;
  return so.owner_id;
end $$;

-- A newly proven scope takes over what it covers (unclaimed things and squatted ones).
create or replace function merci_adopt_scope(p_scope text) returns integer
language plpgsql security definer set search_path = public, pg_temp as $$
declare
  moved integer := 0;
  t bigint;
  before bigint;
begin
  perform pg_advisory_xact_lock(7310005, 0);
  for t in select u.id from merci_things_under(p_scope) u(id) order by 1 loop
    select owner_id into before from things where id = t;
    if merci_assign_thing(t) is distinct from before then
      moved := moved + 1;
    end if;
  end loop;
  return moved;
end $$;

-- ---------------------------------------------------------------- triggers

-- New things are owned by whoever's scope covers them, whatever the insert says;
-- a changed owner must be the one the scopes name.
create or replace function merci_things_ownership() returns trigger
language plpgsql security definer set search_path = public, pg_temp as $$
declare
  so record;
begin
  -- (A page kept in a second form before this migration keeps its '#id' key until its URL changes.)
  if tg_op = 'INSERT' or new.url is distinct from old.url or new.canon is distinct from old.canon then
    new.canon := merci_canon(new.url);
  end if;
  if tg_op = 'INSERT' then
    perform pg_advisory_xact_lock_shared(7310005, 0);
    select * into so from merci_scope_owner(new.canon);
    new.owner_id := so.owner_id;
    new.site_id := so.site_id;
    if so.owner_id is null then
      new.claimed_at := null;
    else
      new.claimed_at := coalesce(new.claimed_at, now());
      new.tenant_id := (select a.tenant_id from accounts a where a.id = so.owner_id);
    end if;
    return new;
  end if;
  if new.owner_id is not null
     and (new.owner_id, new.canon) is distinct from (old.owner_id, old.canon)
     and new.owner_id is distinct from (select o.owner_id from merci_scope_owner(new.canon) o) then
    raise exception 'thing % can only belong to the creator whose verified site covers %', new.id, new.canon
      using errcode = 'check_violation';
  end if;
  if new.owner_id is not null and new.tenant_id is distinct from old.tenant_id
     and new.tenant_id is distinct from (select a.tenant_id from accounts a where a.id = new.owner_id) then
    raise exception 'a claimed thing lives in its owner''s tenant' using errcode = 'check_violation';
  end if;
  return new;
end $$;
create trigger things_ownership before insert or update of owner_id, url, canon, tenant_id on things
  for each row execute function merci_things_ownership();

-- A site's scope follows its proof; it only grows (a site proven at its root stays so
-- when a later check finds the meta tag instead).
create or replace function merci_sites_scope() returns trigger language plpgsql as $$
declare
  scope text;
begin
  if new.verified_at is null then
    new.verified_scope := null;
    return new;
  end if;
  scope := merci_site_scope(new.url, new.verification_method);
  if tg_op = 'UPDATE' and old.verified_scope is not null and starts_with(scope, old.verified_scope) then
    scope := old.verified_scope;
  end if;
  new.verified_scope := scope;
  return new;
end $$;
create trigger sites_scope before insert or update of verified_at, verification_method, url, verified_scope on sites
  for each row execute function merci_sites_scope();

create or replace function merci_sites_adopt() returns trigger
language plpgsql security definer set search_path = public, pg_temp as $$
begin
  if tg_op = 'INSERT' then
    perform merci_adopt_scope(s) from (
      select distinct n.verified_scope as s from new_rows n where n.verified_scope is not null order by 1) x;
  else
    perform merci_adopt_scope(s) from (
      select distinct n.verified_scope as s from new_rows n join old_rows o on o.id = n.id
       where n.verified_scope is not null and n.verified_scope is distinct from o.verified_scope order by 1) x;
  end if;
  return null;
end $$;
create trigger sites_adopt_insert after insert on sites referencing new table as new_rows
  for each statement execute function merci_sites_adopt();
create trigger sites_adopt_update after update on sites referencing old table as old_rows new table as new_rows
  for each statement execute function merci_sites_adopt();

-- ---------------------------------------------------------------- the partner precheck, by canonical URL

drop function merci_partner_precheck(bigint[], bigint[], text[], text[], date, text);
create function merci_partner_precheck(
    p_supporters bigint[], p_things bigint[], p_urls text[], p_keys text[], p_period date, p_currency text
) returns table (i integer, linked boolean, home_tenant bigint, thing_id bigint, owner_id bigint, own boolean,
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
         case when l.i is not null then
           t.owner_id is not distinct from l.supporter_id and t.owner_id is not null
           or merci_owns(l.supporter_id, coalesce(t.canon, merci_canon(i.url))) end,
         case when l.i is not null then coalesce(b.balance, 0) end,
         case when l.i is not null then exists (select 1 from clicks c where c.supporter_id = l.supporter_id
                                                  and c.thing_id = t.id and c.period = p_period) end,
         case when l.i is not null then exists (select 1 from clicks c where c.supporter_id = l.supporter_id
                                                  and c.idempotency_key = l.key) end
    from input i
    left join linked l on l.i = i.i
    left join things t on l.i is not null
                      and t.id = coalesce(i.thing_id, (select u.id from things u where u.canon = merci_canon(i.url)))
    left join balances b on b.supporter_id = l.supporter_id
   order by i.i
$$;

-- ---------------------------------------------------------------- privileges

revoke execute on function merci_partner_precheck(bigint[], bigint[], text[], text[], date, text) from public;
grant execute on function merci_partner_precheck(bigint[], bigint[], text[], text[], date, text) to merci_app;
revoke execute on function merci_release_escrow(bigint), merci_assign_thing(bigint), merci_adopt_scope(text),
  merci_things_under(text), merci_sites_adopt(), merci_things_ownership(), merci_scope_owner(text),
  merci_owns(bigint, text) from public;
-- Claiming applies the rule and nothing else, so the API may ask for it; releasing and
-- adopting are the workers' (and the claim's own) business.
grant execute on function merci_assign_thing(bigint) to merci_app, merci_system;
grant execute on function merci_release_escrow(bigint), merci_adopt_scope(text), merci_things_under(text)
  to merci_system;
grant execute on function merci_canon(text), merci_scope_prefixes(text), merci_covers(text, text),
  merci_site_scope(text, text), merci_scope_owner(text), merci_owns(bigint, text) to merci_app, merci_system;

-- The API names a thing's page and listing; the owner, its site, its tenant once
-- claimed and the canonical key are the database's to decide.
revoke insert, update on things from merci_app;
grant insert (tenant_id, url, title, description, category, language, tags, hidden) on things to merci_app;
grant update (title, description, category, language, tags, hidden) on things to merci_app;
drop policy own_tenant_insert on things;
drop policy own_tenant_update on things;
create policy own_tenant_insert on things for insert to merci_app
  with check (tenant_id = merci_tenant()
              or (owner_id is not null and tenant_id = (select a.tenant_id from accounts a where a.id = owner_id)));
create policy own_tenant_update on things for update to merci_app
  using (tenant_id = merci_tenant()) with check (tenant_id = merci_tenant());

-- A site is added unproven; only the verifier (merci_system) records a proof.
revoke insert, update on sites from merci_app;
grant insert (tenant_id, owner_id, url, host, verification_token) on sites to merci_app;
grant update (title, description, language, category, tags, feed_url, listed, listed_at, updated_at,
              verification_requested_at, verification_error) on sites to merci_app;

alter table account_flags enable row level security;
alter table account_flags force row level security;
create policy system_all on account_flags to merci_system, current_user using (true) with check (true);
create policy tenant_rows on account_flags for select to merci_app using (tenant_id = merci_tenant());
grant select on account_flags to merci_app;
grant select, insert on account_flags to merci_system;

-- ---------------------------------------------------------------- the data already here

-- Every thing goes to the owner its scopes name: unproven owners lose what they held
-- (flagged), unclaimed things in a verified scope are adopted with their escrow, and
-- escrow stranded on claimed things by the close/claim race is released.
select merci_assign_thing(t.id) from things t
 where t.owner_id is distinct from (select o.owner_id from merci_scope_owner(t.canon) o)
 order by t.id;
select merci_release_escrow(t.id) from things t
 where t.owner_id is not null
   and exists (select 1 from ledger_accounts la where la.kind = 'escrow' and la.thing_id = t.id
                  and (select coalesce(sum(e.amount), 0) from entries e where e.ledger_account_id = la.id) > 0)
 order by t.id;
