-- 0026's word functions as PL/pgSQL. As SQL functions with a FROM they could not be
-- inlined, so every statement that called them planned their bodies again: about 2 ms
-- a search for a word's variants, which PL/pgSQL computes in microseconds (its plans, and
-- here its plain string operations, last as long as the session).

create or replace function merci_word_variants(w text, d integer) returns text[]
language plpgsql immutable parallel safe strict as $$
declare
  out text[] := array[w];
  one text;
  n integer := length(w);
begin
  if d >= 1 then
    for i in 1 .. n loop
      one := overlay(w placing '' from i for 1);
      out := out || one;
      if d >= 2 then
        for j in 1 .. n - 1 loop
          out := out || overlay(one placing '' from j for 1);
        end loop;
      end if;
    end loop;
  end if;
  return array(select distinct v from unnest(out) v where v <> '' order by v);
end $$;

create or replace function merci_word_lexemes(w text) returns text[]
language plpgsql immutable parallel safe strict as $$
begin
  return array(select distinct l from unnest(tsvector_to_array(to_tsvector('merci_en', w)
                                             || to_tsvector('merci_fr', w) || to_tsvector('merci_simple', w))) l
               order by l);
end $$;
