"""Generated directory listings for the search benchmark: set-based SQL only
(INSERT … SELECT over generate_series), so a million listings take about a minute.

Words are drawn with a skew (a few very common, a long tail of rare ones) from an
English, a French and a made-up vocabulary, so that searches range from matching a
fifth of the directory to matching a handful of sites.
"""

from __future__ import annotations

import asyncpg

EN = """podcast music photo photography video travel cooking recipe kitchen garden gardening code software
open source rust python javascript linux design art drawing painting comic science history politics economy
climate bicycle running hiking mountain ocean sailing fishing coffee tea bread baking beer wine cheese vegan
family parenting education school teaching math physics astronomy space robot hardware electronics radio
film cinema theatre dance poetry novel book review writing blog news journal diary letter story game games
chess board puzzle retro vintage fashion knitting sewing craft woodwork pottery architecture city urban map
language translation french english spanish german italian japanese history archive museum library data
privacy security network server cloud database web browser mobile app tutorial course lecture interview
episode season series documentary animation illustration typography font color minimal free independent
local community cooperative nonprofit charity health fitness yoga meditation sleep food market farm animal
bird cat dog horse insect flower tree forest river lake island beach desert winter summer autumn spring""".split()

FR = """balado musique photographie vidéo voyage cuisine recette jardin jardinage logiciel libre dessin peinture
bande dessinée science histoire politique économie climat vélo course randonnée montagne océan voile pêche
café thé pain pâtisserie bière vin fromage végétalien famille éducation école enseignement mathématiques
physique astronomie espace robot électronique radio cinéma théâtre danse poésie roman livre critique écriture
journal carnet lettre histoire jeu jeux échecs casse-tête rétro mode tricot couture artisanat menuiserie
poterie architecture ville urbain carte langue traduction français anglais espagnol allemand italien archive
musée bibliothèque données vie privée sécurité réseau serveur nuage base navigateur mobile tutoriel cours
conférence entretien épisode saison série documentaire animation illustration typographie couleur
indépendant local communauté coopérative association santé forme yoga méditation sommeil nourriture marché
ferme animal oiseau chat chien cheval insecte fleur arbre forêt rivière lac île plage désert hiver été
automne printemps chanson chansons chanteur chanteuse lyonnais parisien breton provençal québécois""".split()

CATEGORIES = ["text", "images", "video", "audio", "software", "people", "rest"]
LANGUAGES = ["en", "fr", "de", "es", "it", "nl", "pt"]


async def generate(conn: asyncpg.Connection, rows: int, *, tenants: int = 5, made_up_words: int = 30_000) -> None:
    """Fill sites and the search projection with `rows` listed sites (owner role, no RLS in the way)."""
    owners = max(10, rows // 10)
    await conn.execute("set session_replication_role = replica")  # bulk load: skip the per-row triggers
    await conn.execute("set synchronous_commit = off")
    await conn.execute(
        "insert into tenants (slug, name) select 'bench-' || g, 'Bench ' || g from generate_series(1, $1) g"
        " on conflict do nothing", tenants)
    # Word ranks follow Zipf's law (drawn log-uniformly). The twenty commonest are made-up
    # fillers, as stop words would be; the real words come next, the made-up tail last.
    real = [w for pair in zip(EN, FR, strict=False) for w in pair] + EN[len(FR):] + FR[len(EN):]
    await conn.execute(
        """create temp table vocab as
           select row_number() over (order by k) - 1 as i, w from (
             select g as k, substr(md5('w' || g), 1, 3 + g % 6) || chr(97 + g % 26) as w
               from generate_series(1, $2) g
             union all select 20.5 + n / 100000.0, w from unnest($1::text[]) with ordinality u(w, n)
           ) v""", real, made_up_words)
    n_words = await conn.fetchval("select count(*) from vocab")
    await conn.execute(
        """insert into accounts (tenant_id, handle, display_name)
           select t.id, 'bench_' || g, 'Bench ' || g
             from generate_series(1, $1) g
             join lateral (select id from tenants where slug = 'bench-' || (1 + g % $2)) t on true""",
        owners, tenants)
    first_owner = await conn.fetchval("select min(id) from accounts where handle like 'bench\\_%'")
    first_tenant = await conn.fetchval("select min(id) from tenants where slug like 'bench-%'")
    # Thirty word draws per site, joined to the vocabulary in one hash join, then cut into
    # title (3-4 words), tags (2-3) and description (20).
    await conn.execute(
        f"""create temp table texts as
            select d.site,
                   initcap(string_agg(v.w, ' ' order by d.pos) filter (where d.pos < 3 + d.site % 2)) as title,
                   array_agg(v.w order by d.pos) filter (where d.pos between 4 and 5 + least(1, d.site % 3)) as tags,
                   string_agg(v.w, ' ' order by d.pos) filter (where d.pos >= 7) as description
              from (select g / 27 as site, g % 27 as pos,
                           least({n_words} - 1, floor(exp(random() * ln({n_words}))) - 1)::int as k
                      from generate_series(0, $1::bigint * 27 - 1) g) d
              join vocab v on v.i = d.k
             group by d.site""", rows)
    await conn.execute(
        f"""insert into sites (tenant_id, owner_id, url, host, verification_token, verified_at, verification_method,
                              verified_scope, listed, listed_at, title, description, language, category, tags)
            select $1 + t.site % $2, $3 + t.site % $4, 'https://site' || t.site || '.bench.example/',
                   'site' || t.site || '.bench.example', md5(t.site::text), now(), 'meta',
                   merci_site_scope('https://site' || t.site || '.bench.example/', 'meta'), true,
                   now() - (random() * interval '1000 days'), t.title, t.description,
                   (array{LANGUAGES!r}::text[])[1 + least(6, floor(7 * power(random(), 2))::int)],
                   (array{CATEGORIES!r}::text[])[1 + least(6, floor(7 * power(random(), 1.5))::int)],
                   t.tags
              from texts t""",
        first_tenant, tenants, first_owner, owners)
    await index(conn, "%.bench.example")


async def index(conn: asyncpg.Connection, hosts: str) -> None:
    """What the per-row triggers would have done for the sites whose host is like `hosts`
    (written with them off): the search projection, with popularity drawn with a skew, the
    lexemes, the words and their variants (merci.spelling), the tier and the counts."""
    await conn.execute("set session_replication_role = replica")
    await conn.execute(
        """insert into site_search (site_id, tenant_id, category, language, listed_at, document, popularity, trending)
           select id, tenant_id, category, language, listed_at,
                  merci_listing_document(language, title, tags, description), p, p * (0.2 + random() * 0.8)
             from (select s.*, floor(5000 * power(random(), 8))::bigint as p from sites s
                    where host like $1) s""", hosts)
    await conn.execute("insert into search_lexemes select distinct unnest(tsvector_to_array(document)) from site_search"
                       " on conflict do nothing")
    await conn.execute(
        """insert into search_words (word, shown, lexemes)
           select w.word, min(w.shown), merci_word_lexemes(w.word)
             from sites s, merci_text_words(concat_ws(' ', s.title, array_to_string(s.tags, ' '), s.description)) w
            where s.host like $1 group by w.word
           on conflict do nothing""", hosts)
    await conn.execute("insert into search_word_variants (variant, word)"
                       " select v, w.word from search_words w, unnest(merci_indexed_variants(w.word)) v"
                       " on conflict do nothing")
    await conn.execute("select merci_refresh_search_top()")
    await conn.execute("delete from listing_counts")
    await conn.execute("insert into listing_counts (tenant_id, category, language, n)"
                       " select tenant_id, category, language, count(*) from site_search group by 1, 2, 3")
    await conn.execute("set session_replication_role = default")
    for table in ("sites", "site_search", "site_search_top", "search_lexemes", "search_words",
                  "search_word_variants", "listing_counts", "accounts"):
        await conn.execute(f"vacuum analyze {table}")
