-- The directory: site verification bookkeeping, the search projection of listed
-- sites (multilingual full text, typo fallback, facets) and click-based rankings.

create extension if not exists unaccent;
create extension if not exists pg_trgm;

-- unaccent(text) is only STABLE: it finds its dictionary through search_path. Naming
-- the dictionary makes the result depend on the argument alone, so indexes may use it.
create or replace function merci_unaccent(text) returns text
language sql immutable parallel safe strict as $$
  select public.unaccent('public.unaccent'::regdictionary, $1)
$$;

-- Accent-insensitive configurations: unaccent runs before the stemmer, so "café",
-- "cafe" and "CAFÉ" meet. Plain ASCII words need no unaccenting.
create text search configuration merci_en (copy = english);
alter text search configuration merci_en
  alter mapping for hword, hword_part, word with unaccent, english_stem;
create text search configuration merci_fr (copy = french);
alter text search configuration merci_fr
  alter mapping for hword, hword_part, word with unaccent, french_stem;
create text search configuration merci_simple (copy = simple);
alter text search configuration merci_simple
  alter mapping for hword, hword_part, word with unaccent, simple;

-- A listing's language picks its stemmer; languages without one are only unaccented.
create or replace function merci_ts_config(language text) returns regconfig
language sql immutable parallel safe as $$
  select case language when 'en' then 'merci_en'::regconfig
                       when 'fr' then 'merci_fr'::regconfig
                       else 'merci_simple'::regconfig end
$$;

-- Title above tags above description.
create or replace function merci_listing_document(language text, title text, tags text[], description text)
returns tsvector language sql immutable parallel safe as $$
  select setweight(to_tsvector(merci_ts_config(language), coalesce(title, '')), 'A')
      || setweight(to_tsvector(merci_ts_config(language), coalesce(array_to_string(tags, ' '), '')), 'B')
      || setweight(to_tsvector(merci_ts_config(language), coalesce(description, '')), 'C')
$$;

-- What a search may match: every configuration a query could be written in.
create or replace function merci_search_query(q text) returns tsquery
language sql immutable parallel safe strict as $$
  select websearch_to_tsquery('merci_en', q) || websearch_to_tsquery('merci_fr', q)
      || websearch_to_tsquery('merci_simple', q)
$$;

alter table sites add column verification_requested_at timestamptz;
alter table sites add column verification_checked_at timestamptz;
alter table sites add column listed_at timestamptz;
update sites set listed_at = coalesce(verified_at, created_at) where listed;
create index on sites (owner_id);
-- Clicks of a site's things (Site.clicksThisMonth, rankings) go through this.
create index on things (site_id) where site_id is not null;

-- The search projection: one narrow row per listed, verified site, kept in step with
-- `sites` by a trigger in the same transaction. It holds only public data, so every
-- tenant may read it, and its RLS policy is a plain `true` that does not stop the
-- planner from using the full-text and sort indexes.
create table site_search (
    site_id     bigint primary key references sites(id) on delete cascade,
    tenant_id   bigint not null references tenants(id),
    category    text not null,
    language    text not null,
    listed_at   timestamptz not null,
    document    tsvector not null,
    popularity  bigint not null default 0 check (popularity >= 0),  -- clicks of the last 30 days
    trending    real not null default 0 check (trending >= 0)        -- the same clicks, halved per week of age
);
create index site_search_document on site_search using gin (document);
create index site_search_newest on site_search (listed_at desc, site_id desc);
create index site_search_popular on site_search (popularity desc, site_id desc);
create index site_search_trending on site_search (trending desc, site_id desc);
create index site_search_category on site_search (category, popularity desc, site_id desc);
create index site_search_tenant on site_search (tenant_id, listed_at desc, site_id desc);

-- Every lexeme of a listed site: the typo fallback looks the closest ones up by
-- trigram similarity, then searches with them. Words are never deleted: a stale
-- one only makes a fallback query find nothing.
create table search_lexemes (
    lexeme  text primary key
);
create index search_lexemes_trgm on search_lexemes using gist (lexeme gist_trgm_ops);

-- Listing counts per tenant, category and language: facets and totals of searches
-- without words read these few rows instead of counting a million.
create table listing_counts (
    tenant_id  bigint not null references tenants(id),
    category   text not null,
    language   text not null,
    n          bigint not null check (n >= 0),
    primary key (tenant_id, category, language)
);

-- Keeps site_search in step with sites. SECURITY DEFINER: the API (merci_app) edits
-- sites, but only this function writes the derived, shared tables.
create or replace function merci_sync_site_search() returns trigger
language plpgsql security definer set search_path = public, pg_temp as $$
begin
  if tg_op = 'DELETE' or not (new.listed and new.verified_at is not null) then
    delete from site_search where site_id = old.id;
    return null;
  end if;
  if tg_op = 'UPDATE' and old.listed and old.verified_at is not null
     and (old.title, old.description, old.language, old.category, old.tags, old.tenant_id, old.listed_at)
         is not distinct from
         (new.title, new.description, new.language, new.category, new.tags, new.tenant_id, new.listed_at) then
    return null;  -- nothing searchable changed
  end if;
  insert into site_search as s (site_id, tenant_id, category, language, listed_at, document)
  values (new.id, new.tenant_id, new.category, new.language, coalesce(new.listed_at, now()),
          merci_listing_document(new.language, new.title, new.tags, new.description))
  on conflict (site_id) do update
    set tenant_id = excluded.tenant_id, category = excluded.category, language = excluded.language,
        listed_at = excluded.listed_at, document = excluded.document;
  insert into search_lexemes (lexeme)
  select w from unnest(tsvector_to_array(merci_listing_document(new.language, new.title, new.tags, new.description))) w
  order by w
  on conflict do nothing;
  return null;
end $$;
create trigger sites_search after insert or update or delete on sites
  for each row execute function merci_sync_site_search();

-- Counts move with the projection, one statement at a time (bulk listings update each
-- counter once, in key order, so concurrent statements cannot deadlock on them).
create or replace function merci_count_listings() returns trigger
language plpgsql security definer set search_path = public, pg_temp as $$
begin
  if tg_op in ('UPDATE', 'DELETE') then
    insert into listing_counts as c (tenant_id, category, language, n)
    select tenant_id, category, language, 0 from old_rows group by 1, 2, 3 order by 1, 2, 3
    on conflict do nothing;
    update listing_counts c set n = c.n - d.n
      from (select tenant_id, category, language, count(*) as n from old_rows group by 1, 2, 3 order by 1, 2, 3) d
     where (c.tenant_id, c.category, c.language) = (d.tenant_id, d.category, d.language);
  end if;
  if tg_op in ('UPDATE', 'INSERT') then
    insert into listing_counts as c (tenant_id, category, language, n)
    select tenant_id, category, language, count(*) from new_rows group by 1, 2, 3 order by 1, 2, 3
    on conflict (tenant_id, category, language) do update set n = c.n + excluded.n;
  end if;
  return null;
end $$;
create trigger site_search_count_insert after insert on site_search
  referencing new table as new_rows for each statement execute function merci_count_listings();
create trigger site_search_count_update after update on site_search
  referencing old table as old_rows new table as new_rows for each statement execute function merci_count_listings();
create trigger site_search_count_delete after delete on site_search
  referencing old table as old_rows for each statement execute function merci_count_listings();

-- When the rankings were last recomputed (one row).
create table directory_state (
    id                   boolean primary key default true check (id),
    rankings_at          timestamptz
);
insert into directory_state (id) values (true);

-- Sites listed before this migration.
insert into site_search (site_id, tenant_id, category, language, listed_at, document)
select id, tenant_id, category, language, listed_at, merci_listing_document(language, title, tags, description)
  from sites where listed and verified_at is not null;
insert into search_lexemes (lexeme)
select distinct unnest(tsvector_to_array(document)) from site_search on conflict do nothing;

do $$
declare t text;
begin
  foreach t in array array['site_search', 'search_lexemes', 'listing_counts', 'directory_state']
  loop
    execute format('alter table %I enable row level security', t);
    execute format('alter table %I force row level security', t);
    execute format('create policy system_all on %I to merci_system, current_user using (true) with check (true)', t);
    -- Public by construction: only listed, verified sites reach these tables.
    execute format('create policy read_all on %I for select to merci_app using (true)', t);
  end loop;
end $$;

grant select on site_search, search_lexemes, listing_counts, directory_state to merci_app;
grant select, insert, update, delete on site_search, search_lexemes, listing_counts, directory_state to merci_system;
grant execute on all functions in schema public to merci_app, merci_system;
