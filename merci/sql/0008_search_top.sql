-- Relevance over broad words. Ranking needs each match's document, and a word found in
-- a tenth of a million listings means a hundred thousand scattered rows to read and rank:
-- far too slow for one page. So relevance first ranks the matches among the most popular
-- listings, kept in a small table of their own (a few MB, so it stays in memory), and only
-- ranks all matches when there are few of them (merci/search.py chooses).

-- Searches are parsed with three configurations; the same query three times over costs
-- every match three evaluations and skews estimates, so a configuration's query joins
-- only when it differs from the ones before it. Matches and ranks are unchanged.
create or replace function merci_search_query(q text) returns tsquery
language sql immutable parallel safe strict as $$
  select case when en = fr and fr = sim then en
              when en = fr or fr = sim then en || sim
              when en = sim then en || fr
              else en || fr || sim end
    from (select websearch_to_tsquery('merci_en', q) as en, websearch_to_tsquery('merci_fr', q) as fr,
                 websearch_to_tsquery('merci_simple', q) as sim) t
$$;

-- How many of the most popular listings the relevance tier holds.
create or replace function merci_search_top_size() returns integer
language sql immutable parallel safe as $$ select 10000 $$;

-- The relevance tier: the search rows of the most popular listings (by POPULAR's order),
-- copied. Membership is decided when the rankings are refreshed; in between, a new listing
-- joins while the tier is not full (so small directories have everything in it), and edits
-- and unlistings reach it at once (triggers below, the foreign key).
create table site_search_top (
    site_id    bigint primary key references site_search(site_id) on delete cascade,
    tenant_id  bigint not null,
    category   text not null,
    language   text not null,
    document   tsvector not null
);
create index site_search_top_document on site_search_top using gin (document);

-- Rebuild the tier from the current popularity (the rankings refresh calls this).
create or replace function merci_refresh_search_top() returns void
language sql security definer set search_path = public, pg_temp as $$
  with new_top as (
         select site_id from site_search order by popularity desc, site_id desc limit merci_search_top_size()),
       gone as (
         delete from site_search_top t where not exists (select 1 from new_top n where n.site_id = t.site_id))
  insert into site_search_top (site_id, tenant_id, category, language, document)
  select ss.site_id, ss.tenant_id, ss.category, ss.language, ss.document
    from new_top n join site_search ss on ss.site_id = n.site_id
   order by ss.site_id
  on conflict (site_id) do nothing
$$;

create or replace function merci_sync_search_top() returns trigger
language plpgsql security definer set search_path = public, pg_temp as $$
begin
  update site_search_top
     set tenant_id = new.tenant_id, category = new.category, language = new.language, document = new.document
   where site_id = new.site_id;
  if not found and tg_op = 'INSERT'
     and (select count(*) from site_search_top) < merci_search_top_size() then
    insert into site_search_top (site_id, tenant_id, category, language, document)
    values (new.site_id, new.tenant_id, new.category, new.language, new.document)
    on conflict (site_id) do nothing;
  end if;
  return null;
end $$;
create trigger site_search_top_sync after insert or update of tenant_id, category, language, document
  on site_search for each row execute function merci_sync_search_top();

select merci_refresh_search_top();

-- Typo correction looks for the indexed lexemes at least 0.3 similar to a word (pg_trgm's
-- default similarity_threshold, merci.search.MIN_SIMILARITY): a trigram GIN index finds
-- those few directly, where nearest-neighbour order over the GiST index walked much of it.
create index search_lexemes_trgm_gin on search_lexemes using gin (lexeme gin_trgm_ops);
drop index search_lexemes_trgm;

alter table site_search_top enable row level security;
alter table site_search_top force row level security;
create policy system_all on site_search_top to merci_system, current_user using (true) with check (true);
-- Public by construction, like site_search.
create policy read_all on site_search_top for select to merci_app using (true);
grant select on site_search_top to merci_app;
grant select, insert, update, delete on site_search_top to merci_system;
grant execute on function merci_search_query(text), merci_search_top_size(), merci_refresh_search_top()
  to merci_app, merci_system;
