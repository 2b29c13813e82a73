"""Typo tolerance by Meilisearch's and Algolia's rules (merci.spelling), corrections in
words people read, and highlights: through GraphQL, on the /directory page, and the
rules themselves. Each test's sites live in a tenant of its own."""

from __future__ import annotations

import time
from html import unescape
from typing import Any
from urllib.parse import urlencode

import asyncpg
import httpx
import pytest

from merci import spelling
from tests.conftest import GraphQLClient
from tests.directory.helpers import listed_site, new_tenant, person

SEARCH = """query($q: String, $language: String, $tenant: String, $exact: Boolean! = false, $sort: SiteSort) {
  searchSites(query: $q, language: $language, tenant: $tenant, exact: $exact, sort: $sort, first: 20) {
    edges { node { title description language } }
    correctedQuery totalCount
    highlights { site title { start length } description { start length } }
  } }"""

SITES = [
    # The demo's three sites: "pictures" and "Writing" in every description, one French.
    ("Alice's site", "Writing, audio and pictures by alice.", "en", ["demo", "alice"]),
    ("Bob's site", "Writing, audio and pictures by bob.", "en", ["demo", "bob"]),
    ("Chloe's site", "Writing, audio and pictures by chloe.", "fr", ["demo", "chloe"]),
    ("Pâtisserie Lucie", "Gâteaux, croissants et macarons de Paris.", "fr", ["pâtisserie"]),
    ("House music weekly", "Deep house mixes.", "en", ["music"]),
    ("Horse riding club", "Lessons for all ages.", "en", ["riding"]),
    ("Running notes", "A runner's log of mountains and painting.", "en", ["sport"]),
    ("Wanderungen im Schwarzwald", "Routen und Karten.", "de", ["wandern"]),
]


@pytest.fixture(scope="module")
async def world(system_pool: asyncpg.Pool) -> dict[str, Any]:
    async with system_pool.acquire() as conn:
        tid, slug = await new_tenant(conn)
        owner = await person(conn, tid, "typist")
        for title, description, language, tags in SITES:
            await listed_site(conn, tid, owner, title=title, description=description, language=language, tags=tags)
    return {"tenant": slug}


def search(gql: GraphQLClient, world: dict[str, Any], q: str, **variables: Any) -> dict[str, Any]:
    result: dict[str, Any] = gql(SEARCH, {"tenant": world["tenant"], "q": q, **variables})["searchSites"]
    return result


def titles(result: dict[str, Any]) -> list[str]:
    return [e["node"]["title"] for e in result["edges"]]


DEMO = ["Alice's site", "Bob's site", "Chloe's site"]


# ------------------------------------------------------------------ the examples


def test_a_missing_letter_finds_every_site(gql: GraphQLClient, world: dict[str, Any]) -> None:
    result = search(gql, world, "pitures")
    assert sorted(titles(result)) == DEMO  # was: nothing
    assert result["correctedQuery"] == "pictures"


def test_two_typos_in_a_short_word_when_nothing_else_matches(gql: GraphQLClient, world: dict[str, Any]) -> None:
    # "gatuex" has 6 letters (one typo by the rules) and is two from "gâteaux": the looser
    # second try finds it, and says so with the word as the listing writes it.
    result = search(gql, world, "gatuex")
    assert titles(result) == ["Pâtisserie Lucie"]
    assert result["correctedQuery"] == "gâteaux"


def test_a_correction_finds_every_language(gql: GraphQLClient, world: dict[str, Any]) -> None:
    # "writing" is 'write' in English documents and 'writing' in French ones: both searched.
    result = search(gql, world, "wrting")
    assert sorted(titles(result)) == DEMO and result["correctedQuery"] == "writing"
    english = search(gql, world, "wrting", language="en")
    assert sorted(titles(english)) == ["Alice's site", "Bob's site"]  # was: nothing


def test_a_correction_names_a_word_never_a_stem(gql: GraphQLClient, world: dict[str, Any]) -> None:
    result = search(gql, world, "croisants")
    assert titles(result) == ["Pâtisserie Lucie"]
    assert result["correctedQuery"] == "croissants"  # was: "croiss"


def test_words_in_the_directory_are_no_correction(gql: GraphQLClient, world: dict[str, Any]) -> None:
    for q in ("pictures", "gateaux", "croissant", "writing"):
        assert search(gql, world, q)["correctedQuery"] is None, q


# ------------------------------------------------------------------ the rules


@pytest.mark.parametrize(("q", "kind"), [("picctures", "insertion"), ("pctures", "deletion"),
                                         ("pixtures", "substitution"), ("pictrues", "transposition"),
                                         ("PICTRUES", "case is no typo")])
def test_each_kind_of_typo_is_one(gql: GraphQLClient, world: dict[str, Any], q: str, kind: str) -> None:
    assert sorted(titles(search(gql, world, q))) == DEMO, kind


def test_one_typo_from_five_letters_two_from_nine(gql: GraphQLClient, world: dict[str, Any]) -> None:
    assert titles(search(gql, world, "hosue")) == ["House music weekly"]  # 5 letters, one typo
    # 4 letters: no typo by the rules, so only the looser try finds "deep", as a correction;
    # 3 letters never.
    deap = search(gql, world, "deap")
    assert titles(deap) == ["House music weekly"] and deap["correctedQuery"] == "deep"
    assert titles(search(gql, world, "dep")) == []
    assert titles(search(gql, world, "muontanis")) == ["Running notes"]  # 9 letters, two typos
    assert titles(search(gql, world, "mountians")) == ["Running notes"]
    # 8 letters: one typo only ("pianitng" is two from "painting"); nothing matches then, and the
    # looser try allows two, saying so.
    strict = spelling.allowed_typos("pianitng")
    assert strict == 1 and spelling.distance("pianitng", "painting") == 2
    looser = search(gql, world, "pianitng")
    assert titles(looser) == ["Running notes"] and looser["correctedQuery"] == "painting"
    # Three typos are too many even so.
    assert titles(search(gql, world, "pnaitnig")) == []


def test_accents_and_case_are_never_typos(gql: GraphQLClient, world: dict[str, Any]) -> None:
    for q in ("gateaux", "GÂTEAUX", "Gâteaux", "patisserie"):
        result = search(gql, world, q)
        assert titles(result) == ["Pâtisserie Lucie"] and result["correctedQuery"] is None, q


def test_the_exact_word_ranks_above_its_typos(gql: GraphQLClient, world: dict[str, Any]) -> None:
    # "house" and "horse" are one typo apart: each finds both, itself first.
    assert titles(search(gql, world, "house")) == ["House music weekly", "Horse riding club"]
    assert titles(search(gql, world, "horse")) == ["Horse riding club", "House music weekly"]
    # ...in every sort but relevance, both are there in that sort's order.
    assert sorted(titles(search(gql, world, "horse", sort="NEWEST"))) == ["Horse riding club", "House music weekly"]


def test_the_last_word_is_a_prefix(gql: GraphQLClient, world: dict[str, Any]) -> None:
    assert titles(search(gql, world, "macar")) == ["Pâtisserie Lucie"]
    assert titles(search(gql, world, "paris macar")) == ["Pâtisserie Lucie"]
    # A prefix longer than the word's stem ("running" is indexed as 'run') still finds it.
    assert titles(search(gql, world, "runni")) == ["Running notes"]
    # Only the last word, and from three letters.
    assert titles(search(gql, world, "macar paris")) == []
    assert titles(search(gql, world, "ma")) == []
    assert search(gql, world, "macar")["correctedQuery"] is None


def test_typos_in_every_configuration(gql: GraphQLClient, world: dict[str, Any]) -> None:
    # English (stemmed), French (stemmed) and German (no stemmer: merci_simple) alike.
    assert "Running notes" in titles(search(gql, world, "runer"))
    assert titles(search(gql, world, "macarnos")) == ["Pâtisserie Lucie"]
    assert titles(search(gql, world, "schwarzwlad")) == ["Wanderungen im Schwarzwald"]


def test_exact_searches_the_words_as_typed(gql: GraphQLClient, world: dict[str, Any]) -> None:
    result = search(gql, world, "wrting", exact=True)
    assert result["edges"] == [] and result["correctedQuery"] is None
    assert titles(search(gql, world, "macar", exact=True)) == []
    assert sorted(titles(search(gql, world, "pictures", exact=True))) == DEMO
    # Quotes, - and or are a web search's, with or without exact.
    assert sorted(titles(search(gql, world, "pictures -bob"))) == ["Alice's site", "Chloe's site"]
    assert sorted(titles(search(gql, world, "horse or house"))) == ["Horse riding club", "House music weekly"]


def test_stop_words_do_not_hide_matches(gql: GraphQLClient, world: dict[str, Any]) -> None:
    assert titles(search(gql, world, "the house")) == ["House music weekly", "Horse riding club"]
    assert titles(search(gql, world, "des macarons")) == ["Pâtisserie Lucie"]


# ------------------------------------------------------------------ highlights


def marked(text: str, ranges: list[dict[str, int]]) -> list[str]:
    return [text[r["start"]:r["start"] + r["length"]] for r in ranges]


def test_highlights_mark_the_matched_words(gql: GraphQLClient, world: dict[str, Any]) -> None:
    result = search(gql, world, "pitures")
    for edge, h in zip(result["edges"], result["highlights"], strict=True):
        assert marked(edge["node"]["description"], h["description"]) == ["pictures"]
        assert h["title"] == []
    pastry = search(gql, world, "gateaux macar")
    node, h = pastry["edges"][0]["node"], pastry["highlights"][0]
    assert marked(node["description"], h["description"]) == ["Gâteaux", "macarons"]
    house = search(gql, world, "house")
    assert [marked(e["node"]["title"], h["title"]) for e, h in zip(house["edges"], house["highlights"],
                                                                    strict=True)] == [["House"], ["Horse"]]
    # Stems are matches too: "runner's" and "Running" for "running".
    runs = search(gql, world, "running")
    assert marked(runs["edges"][0]["node"]["title"], runs["highlights"][0]["title"]) == ["Running"]
    assert search(gql, world, "")["highlights"] == [{"site": h["site"], "title": [], "description": []}
                                                    for h in search(gql, world, "")["highlights"]]


def test_highlight_ranges_count_characters() -> None:
    from merci.highlights import START, STOP, ranges
    text = "Café “au lait” 😀 café"
    assert ranges(text, f"{START}Café{STOP} “au lait” 😀 {START}café{STOP}") == [(0, 4), (17, 4)]
    assert ranges(text, "something else") == []  # the texts disagree: nothing rather than wrong
    assert ranges(f"a{START}b", f"a{START}b") == []


# ------------------------------------------------------------------ the page


def page(api_url: str, **params: str) -> str:
    return httpx.get(f"{api_url}/directory?" + urlencode(params), timeout=10).text


async def test_page_says_what_it_searched_and_offers_the_words_as_typed(api_url: str,
                                                                       system_pool: asyncpg.Pool) -> None:
    async with system_pool.acquire() as conn:
        merci = await conn.fetchval("select id from tenants where slug = 'merci'")
        owner = await person(conn, merci, "baker")
        await listed_site(conn, merci, owner, title="Boulangerie <b>Zéphyrine</b>",
                          description="Viennoiseries et kouignettes du matin.", language="fr")
    # "kouignetes" would be no correction: it has the stem of "kouignettes" (French).
    html = page(api_url, q="kuoignettes", lang="en")
    assert "Showing results for “kouignettes”." in unescape(html)
    assert "<mark>kouignettes</mark>" in html  # the description's word, marked
    assert "Boulangerie &lt;b&gt;Zéphyrine&lt;/b&gt;" in html  # titles still escaped
    instead = unescape(html.split('class="instead" href="')[1].split('"')[0])
    assert "exact=1" in instead and "q=kuoignettes" in instead
    assert "Search instead for “kuoignettes”" in unescape(html)
    typed = page(api_url, **dict(p.split("=") for p in instead.split("?")[1].split("&")))
    assert "Zéphyrine" not in typed and "corrected" not in typed
    french = unescape(page(api_url, q="kuoignettes", lang="fr"))
    assert "Résultats pour « kouignettes »." in french and "Rechercher plutôt « kuoignettes »" in french
    highlighted = page(api_url, q="zephyrine", lang="en")
    assert "&lt;b&gt;<mark>Zéphyrine</mark>&lt;/b&gt;" in highlighted


# ------------------------------------------------------------------ bounds


def test_what_anyone_may_type(gql: GraphQLClient, world: dict[str, Any]) -> None:
    """Quotes, backslashes, tsquery operators, long and many words: a clear answer, fast."""
    for q in ("o'reilly \\ :* & | ! ( ) <-> 'pictures'", "pict:*", "\\'", "'", ":*", "&&&", "é" * 32,
              "x" * 200, " ".join(["abcdefghijklmnopqrstuvwx"] * 8), " ".join(["picturesque"] * 12)):
        started = time.perf_counter()
        result = search(gql, world, q)
        assert isinstance(result["edges"], list), q
        assert time.perf_counter() - started < 2, q
    assert gql.raw(SEARCH, {"tenant": world["tenant"], "q": "x" * 201}).json()["errors"][0]["extensions"][
        "code"] == "QUERY_TOO_LONG"


def test_allowed_typos_and_distance() -> None:
    assert [spelling.allowed_typos(w) for w in ("cafe", "house", "pictures", "mountains", "web3x", "a" * 25)] == [
        0, 1, 1, 2, 0, 0]
    assert spelling.allowed_typos("cafe", looser=True) == 1 and spelling.allowed_typos("house", looser=True) == 2
    assert spelling.distance("pitures", "pictures") == 1
    assert spelling.distance("pictrues", "pictures") == 1  # a transposition is one typo
    assert spelling.distance("gatuex", "gateaux") == 2  # transposed, then a letter between (unrestricted)
    assert spelling.distance("ca", "abc") == 2
    assert spelling.distance("", "abc") == 3 and spelling.distance("same", "same") == 0


def test_the_cheap_filter_never_drops_a_near_word() -> None:
    """spelling.may_be_near skips the distance of candidates surely too far: never one within reach."""
    import random

    rng = random.Random(20)
    for _ in range(5000):
        a = "".join(rng.choice("abcde") for _ in range(rng.randint(1, 9)))
        b = list(a)
        for _ in range(rng.randint(0, 3)):
            op, i = rng.randrange(4), rng.randrange(len(b) + 1)
            if op == 0:
                b.insert(i, rng.choice("abcdef"))
            elif op == 1 and i < len(b):
                del b[i]
            elif op == 2 and i < len(b):
                b[i] = rng.choice("abcdef")
            elif op == 3 and i + 1 < len(b):
                b[i], b[i + 1] = b[i + 1], b[i]
        for k in (0, 1, 2):
            if spelling.distance(a, "".join(b)) <= k:
                assert spelling.may_be_near(a, "".join(b), k), (a, b, k)


async def test_a_few_completions_are_searched_by_their_lexemes(world: dict[str, Any],
                                                                system_pool: asyncpg.Pool) -> None:
    """A prefix lexeme makes the index read every posting list under it: the last word's
    completions, when few, are searched by their own lexemes instead (same matches)."""
    async with system_pool.acquire() as conn:
        few = await spelling.expand(conn, ["paris", "macar"])
        assert few is not None and ":*" not in few.match and "'macaron'" in few.match
        digits = await spelling.expand(conn, ["web3"])  # words with digits are in no list of words
        assert digits is not None and "'web3':*" in digits.match
