-- Typo tolerance (issue 20). The lexemes of `search_lexemes` are stems ("croiss"), which
-- nobody types and a correction must not show, and a typo in a word often lands far from
-- its stem. So the directory also keeps its words as they are written (unaccented,
-- lowercased, unstemmed), each with the lexemes it is indexed as, and for each word its
-- deletion neighbourhood (SymSpell): the word with up to two letters deleted. Two words
-- within two typos (insertions, deletions, substitutions, transpositions) share such a
-- variant, so the words near a typed one are found by looking its own variants up in a
-- btree, and merci/spelling.py keeps those truly within the allowed distance.

-- The words of a listing's text as the search reads them: the default parser's words made
-- of letters only (a word with digits is a code or a number: a typo there is another one),
-- hyphenated words also in parts, unaccented, lowercased.
-- Each word comes with how it was written (lowercased, accents kept: "gâteaux", the
-- accented form when the text has both), which is what a correction shows.
create or replace function merci_text_words(t text, out word text, out shown text) returns setof record
language sql immutable parallel safe strict as $$
  select distinct on (1) lower(merci_unaccent(p.token)), lower(p.token)
    from ts_parse('default', t) p
   where p.tokid in (1, 2, 10, 11)  -- asciiword, word, hword_part, hword_asciipart
     and length(p.token) between 1 and 32
   order by 1, lower(p.token) = lower(merci_unaccent(p.token)), 2
$$;

-- What a word is indexed as in each configuration a listing may use (merci_ts_config).
create or replace function merci_word_lexemes(w text) returns text[]
language sql immutable parallel safe strict as $$
  select coalesce(array_agg(distinct l order by l), '{}')
    from unnest(tsvector_to_array(to_tsvector('merci_en', w) || to_tsvector('merci_fr', w)
                                  || to_tsvector('merci_simple', w))) l
$$;

-- A word and its variants with up to `d` letters deleted. Indexed words get as many as
-- a query may need to reach them: a word of 4 letters is one typo from a 5-letter query,
-- a word of 5 or more up to two from a longer one; shorter words are matched as typed.
create or replace function merci_word_variants(w text, d integer) returns text[]
language sql immutable parallel safe strict as $$
  with d1 as (select overlay(w placing '' from i for 1) as v
                from generate_series(1, length(w)) i where d >= 1),
       d2 as (select overlay(d1.v placing '' from i for 1) as v
                from d1, generate_series(1, length(d1.v)) i where d >= 2)
  select array_agg(distinct v order by v)
    from (select w union all select v from d1 union all select v from d2) t(v)
   where v <> ''
$$;

create or replace function merci_indexed_variants(w text) returns text[]
language sql immutable parallel safe strict as $$
  select merci_word_variants(w, case when length(w) >= 5 then 2 when length(w) = 4 then 1 else 0 end)
$$;

-- "C" collation: a prefix is a range of the primary key ("macar" .. "macar" || U+10FFFF).
create table search_words (
    word     text collate "C" primary key,
    shown    text not null,   -- as first written: what a correction shows
    lexemes  text[] not null
);

create table search_word_variants (
    variant  text collate "C" not null,
    word     text collate "C" not null,
    primary key (variant, word)
);

-- New words of a listing (and their variants); words are never deleted, as lexemes are not.
create or replace function merci_index_words(t text) returns void
language sql security definer set search_path = public, pg_temp as $$
  with added as (
    insert into search_words (word, shown, lexemes)
    select w.word, w.shown, merci_word_lexemes(w.word) from merci_text_words(t) w order by w.word
    on conflict do nothing
    returning word)
  insert into search_word_variants (variant, word)
  select v, a.word from added a, unnest(merci_indexed_variants(a.word)) v
  order by 1, 2
  on conflict do nothing
$$;
revoke execute on function merci_index_words(text) from public;

-- Words join when a site is listed or its text changes (search_lexemes' trigger, 0004,
-- is left as it is).
create or replace function merci_index_site_words() returns trigger
language plpgsql security definer set search_path = public, pg_temp as $$
begin
  perform merci_index_words(concat_ws(' ', new.title, array_to_string(new.tags, ' '), new.description));
  return null;
end $$;
create trigger sites_search_words after insert or update of title, tags, description, listed, verified_at
  on sites for each row when (new.listed and new.verified_at is not null)
  execute function merci_index_site_words();
revoke execute on function merci_index_site_words() from public;

-- The words of sites listed before this migration.
select merci_index_words(concat_ws(' ', s.title, array_to_string(s.tags, ' '), s.description))
  from sites s join site_search ss on ss.site_id = s.id;

do $$
declare t text;
begin
  foreach t in array array['search_words', 'search_word_variants']
  loop
    execute format('alter table %I enable row level security', t);
    execute format('alter table %I force row level security', t);
    execute format('create policy system_all on %I to merci_system, current_user using (true) with check (true)', t);
    -- Public by construction: only listed, verified sites' words reach these tables.
    execute format('create policy read_all on %I for select to merci_app using (true)', t);
  end loop;
end $$;

grant select on search_words, search_word_variants to merci_app;
grant select, insert, update, delete on search_words, search_word_variants to merci_system;
grant execute on function merci_text_words(text), merci_word_lexemes(text), merci_word_variants(text, integer),
  merci_indexed_variants(text) to merci_app, merci_system;
grant execute on function merci_index_words(text) to merci_system;
