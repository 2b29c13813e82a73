"""Search through GraphQL (the merged API process): typos, accents, French stemming,
filters, facets and stable cursor pagination. Each test lists its sites in a tenant
of its own and scopes its searches to it."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from merci import search as domain
from merci.search import COLLECT_LIMIT, PLANNED, WORDS, Reach
from tests.conftest import GraphQLClient
from tests.directory.helpers import listed_site, new_tenant, person

SEARCH = """query($q: String, $category: String, $language: String, $tenant: String, $sort: SiteSort,
                  $first: Int, $after: String) {
  searchSites(query: $q, category: $category, language: $language, tenant: $tenant, sort: $sort,
              first: $first, after: $after) {
    edges { cursor node { id title language category tags owner { handle things { nodes { id } } } } }
    pageInfo { hasNextPage endCursor }
    correctedQuery totalCount
    facets { categories { value count } languages { value count } }
  } }"""


def titles(result: dict[str, Any]) -> list[str]:
    return [e["node"]["title"] for e in result["edges"]]


@pytest.fixture(scope="module")
async def world(system_pool: asyncpg.Pool) -> dict[str, Any]:
    async with system_pool.acquire() as conn:
        tid, slug = await new_tenant(conn)
        owner = await person(conn, tid, "creator")
        sites = [
            ("The Rust podcast", "Weekly episodes about systems programming.", "en", "audio", ["rust", "audio"]),
            ("Café culture in Lyon", "Chroniques des cafés et des bistrots lyonnais.", "fr", "text", ["lyon"]),
            ("Chansons d'automne", "Des chansons françaises enregistrées au jardin.", "fr", "audio", ["musique"]),
            ("Garden photography", "Pictures of flowers and trees, shot on film.", "en", "images", ["garden"]),
            ("Open hardware notes", "Schematics and boards; a podcast now and then.", "en", "software", ["hardware"]),
            ("Vidéos de cuisine", "Recettes filmées pas à pas pour débutants.", "fr", "video", ["cuisine"]),
        ]
        for title, description, language, category, tags in sites:
            await listed_site(conn, tid, owner, title=title, description=description, language=language,
                              category=category, tags=tags)
    return {"tenant": slug}


def search(gql: GraphQLClient, world: dict[str, Any], **variables: Any) -> dict[str, Any]:
    result: dict[str, Any] = gql(SEARCH, {"tenant": world["tenant"], **variables})["searchSites"]
    return result


def test_words_rank_title_above_description(gql: GraphQLClient, world: dict[str, Any]) -> None:
    result = search(gql, world, q="podcast")
    # The title says it (weight A) before the description does (weight C).
    assert titles(result) == ["The Rust podcast", "Open hardware notes"]
    assert result["correctedQuery"] is None


def test_typo_still_finds_the_site(gql: GraphQLClient, world: dict[str, Any]) -> None:
    result = search(gql, world, q="podcsat")
    assert "The Rust podcast" in titles(result)
    assert result["correctedQuery"] == "podcast"
    assert result["totalCount"] == 2


def test_accents_are_ignored_both_ways(gql: GraphQLClient, world: dict[str, Any]) -> None:
    assert titles(search(gql, world, q="cafe")) == ["Café culture in Lyon"]
    assert titles(search(gql, world, q="CAFÉS")) == ["Café culture in Lyon"]
    assert titles(search(gql, world, q="videos")) == ["Vidéos de cuisine"]


def test_french_stemming(gql: GraphQLClient, world: dict[str, Any]) -> None:
    # "chanson" finds "Chansons", "enregistrer" finds "enregistrées", "lyonnais" stays put.
    assert titles(search(gql, world, q="chanson")) == ["Chansons d'automne"]
    assert titles(search(gql, world, q="enregistrer")) == ["Chansons d'automne"]
    assert titles(search(gql, world, q="recette")) == ["Vidéos de cuisine"]


def test_english_stemming(gql: GraphQLClient, world: dict[str, Any]) -> None:
    assert titles(search(gql, world, q="photographs")) == ["Garden photography"]
    assert titles(search(gql, world, q="episode")) == ["The Rust podcast"]


def test_filters(gql: GraphQLClient, world: dict[str, Any]) -> None:
    assert titles(search(gql, world, category="audio", sort="NEWEST")) == ["Chansons d'automne", "The Rust podcast"]
    assert titles(search(gql, world, q="podcast", category="software")) == ["Open hardware notes"]
    assert sorted(titles(search(gql, world, language="fr"))) == ["Café culture in Lyon", "Chansons d'automne",
                                                                "Vidéos de cuisine"]
    assert titles(search(gql, world, category="audio", language="fr")) == ["Chansons d'automne"]
    assert search(gql, world, q="nothing-like-this-anywhere")["edges"] == []


def test_facets_count_per_category_and_language(gql: GraphQLClient, world: dict[str, Any]) -> None:
    everything = search(gql, world)
    assert everything["totalCount"] == 6
    assert {f["value"]: f["count"] for f in everything["facets"]["categories"]} == {
        "audio": 2, "text": 1, "images": 1, "software": 1, "video": 1}
    assert {f["value"]: f["count"] for f in everything["facets"]["languages"]} == {"en": 3, "fr": 3}
    # Each facet ignores its own filter and applies the others.
    audio = search(gql, world, category="audio")
    assert audio["totalCount"] == 2
    assert {f["value"]: f["count"] for f in audio["facets"]["languages"]} == {"en": 1, "fr": 1}
    assert sum(f["count"] for f in audio["facets"]["categories"]) == 6
    words = search(gql, world, q="podcast")
    assert words["totalCount"] == 2
    assert {f["value"]: f["count"] for f in words["facets"]["categories"]} == {"audio": 1, "software": 1}


async def test_cursor_pagination_is_stable(gql: GraphQLClient, system_pool: asyncpg.Pool) -> None:
    async with system_pool.acquire() as conn:
        tid, slug = await new_tenant(conn)
        owner = await person(conn, tid, "creator")
        # Same listing time for all: the site id breaks ties, so pages never overlap or skip.
        for i in range(25):
            await listed_site(conn, tid, owner, title=f"Knitting circle {i:02d}", tags=["knitting"],
                              listed_at="2024-01-01T00:00:00Z")
    for sort in ("RELEVANCE", "NEWEST", "POPULAR", "TRENDING"):
        seen: list[str] = []
        after = None
        pages = 0
        while True:
            page = gql(SEARCH, {"q": "knitting", "tenant": slug, "sort": sort, "first": 10, "after": after})
            result = page["searchSites"]
            seen += [e["node"]["id"] for e in result["edges"]]
            pages += 1
            if not result["pageInfo"]["hasNextPage"]:
                break
            after = result["pageInfo"]["endCursor"]
            if pages == 1:
                # A site listed between two pages does not shift the next page.
                async with system_pool.acquire() as conn:
                    await listed_site(conn, tid, owner, title=f"Knitting circle late {sort}", tags=["knitting"],
                                      listed_at="2023-01-01T00:00:00Z")
        assert pages == 3
        assert len(seen) == len(set(seen)) >= 25, sort
    # A cursor of another sort is refused clearly.
    newest = gql(SEARCH, {"q": "knitting", "tenant": slug, "sort": "NEWEST", "first": 1})["searchSites"]
    r = gql.raw(SEARCH, {"q": "knitting", "tenant": slug, "sort": "POPULAR",
                         "after": newest["pageInfo"]["endCursor"]}).json()
    assert r["errors"][0]["extensions"]["code"] == "BAD_CURSOR"


async def test_popular_and_trending_come_from_recent_clicks(gql: GraphQLClient, system_pool: asyncpg.Pool) -> None:
    async with system_pool.acquire() as conn:
        tid, slug = await new_tenant(conn)
        owner = await person(conn, tid, "creator")
        quiet = await listed_site(conn, tid, owner, title="Quiet pottery")
        old_hit = await listed_site(conn, tid, owner, title="Old pottery hit")
        fresh = await listed_site(conn, tid, owner, title="Fresh pottery")
        thing = {}
        for site in (quiet, old_hit, fresh):
            # A page of the site: its owner's by proof, and it counts for the site.
            thing[site] = await conn.fetchval(
                "insert into things (tenant_id, url, title) select $1, s.url || 'p', 't' from sites s"
                " where s.id = $2 returning id", tid, site)
        fans = [await person(conn, tid, "fan") for _ in range(5)]

        async def clicks(site: int, n: int, days_ago: int) -> None:
            for fan in fans[:n]:
                await conn.execute(
                    "insert into clicks (tenant_id, supporter_id, thing_id, period, accepted_at, idempotency_key)"
                    " values ($1, $2, $3, date_trunc('month', now() - make_interval(days => $4))::date,"
                    " now() - make_interval(days => $4), md5(random()::text))", tid, fan, thing[site], days_ago)

        await clicks(old_hit, 5, 20)  # many, but weeks ago
        await clicks(fresh, 3, 0)  # fewer, today
        await clicks(quiet, 5, 45)  # outside the 30 days: not counted
        await domain.refresh_rankings(conn)
        await domain.refresh_rankings(conn)  # idempotent
    assert titles(gql(SEARCH, {"tenant": slug, "sort": "POPULAR"})["searchSites"])[:2] == [
        "Old pottery hit", "Fresh pottery"]
    assert titles(gql(SEARCH, {"tenant": slug, "sort": "TRENDING"})["searchSites"])[:2] == [
        "Fresh pottery", "Old pottery hit"]


async def test_unlisting_and_editing_reindex(system_pool: asyncpg.Pool, gql: GraphQLClient) -> None:
    async with system_pool.acquire() as conn:
        tid, slug = await new_tenant(conn)
        owner = await person(conn, tid, "creator")
        site = await listed_site(conn, tid, owner, title="Marmalade recipes")
        assert titles(gql(SEARCH, {"q": "marmalade", "tenant": slug})["searchSites"]) == ["Marmalade recipes"]
        await conn.execute("update sites set title = 'Jam recipes' where id = $1", site)
        assert titles(gql(SEARCH, {"q": "marmalade", "tenant": slug})["searchSites"]) == []
        assert titles(gql(SEARCH, {"q": "jam", "tenant": slug})["searchSites"]) == ["Jam recipes"]
        await conn.execute("update sites set listed = false where id = $1", site)
        result = gql(SEARCH, {"q": "jam", "tenant": slug})["searchSites"]
        assert result["edges"] == [] and result["totalCount"] == 0
        assert gql(SEARCH, {"tenant": slug})["searchSites"]["totalCount"] == 0


async def every_page(conn: asyncpg.Connection, q: domain.SearchQuery, *,
                     first: int) -> tuple[list[int], domain.SearchPage]:
    """The site ids of every page of a search, cursor after cursor, and its last page."""
    seen: list[int] = []
    after = None
    while True:
        page = await domain.search(conn, q, first=first, after=after)
        seen += [r["id"] for r in page.rows]
        if not page.has_next_page:
            return seen, page
        after = page.cursors[-1]


async def test_broad_words_rank_the_popular_tier_first(system_pool: asyncpg.Pool,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Words matching more than EXACT_LIMIT listings are ranked among the most popular
    listings (site_search_top) first, the other matches following most popular first;
    paging crosses from one to the other without losing or repeating a site, and the
    counts say they are estimates."""
    async with system_pool.acquire() as conn:
        tid, _ = await new_tenant(conn)
        owner = await person(conn, tid, "creator")
        ids = [await listed_site(conn, tid, owner, title=f"Zither {'zither ' * (i % 3)}notes {i}",
                                 description="Tunes." if i % 2 else "Tunes for the zither.", tags=["strings"])
               for i in range(14)]
        # A full tier would not have these: the six least popular stay outside it.
        for rank, site in enumerate(ids):
            await conn.execute("update site_search set popularity = $2 where site_id = $1", site, 100 - rank)
        outside = ids[8:]
        await conn.execute("delete from site_search_top where site_id = any($1::bigint[])", outside)
        monkeypatch.setattr(domain, "EXACT_LIMIT", 5)  # 8 matches in the tier: broad
        q = domain.clean_query(text="zither", category=None, language=None, sort="RELEVANCE", tenant_id=tid)
        seen, page = await every_page(conn, q, first=3)
        assert len(seen) == len(set(seen)) == 14
        assert set(seen[:8]) == set(ids[:8]) and seen[8:] == outside  # the rest by popularity
        ranks = [await conn.fetchval("select ts_rank(document, merci_search_query('zither'), 1) from site_search"
                                     " where site_id = $1", s) for s in seen[:8]]
        assert ranks == sorted(ranks, reverse=True)
        counts = await domain.facets(conn, q, page.match)
        assert counts.estimated and counts.total == 8  # the tier's 8, scaled by 1 in so small a directory
        monkeypatch.setattr(domain, "EXACT_LIMIT", 1000)
        exact = await domain.facets(conn, q, page.match)
        assert not exact.estimated and exact.total == 14
        # Refreshing the rankings puts them back (the tier is not full here).
        await conn.execute("select merci_refresh_search_top()")
        assert await conn.fetchval("select count(*) from site_search_top where site_id = any($1::bigint[])",
                                   outside) == 6


def test_reach_collects_rare_words_and_walks_for_broad_ones() -> None:
    """A page in a keyset order collects and sorts the matches of words that match few
    listings (a walk of the order's index would read most of it before a page of them
    turns up), and leaves broad words to the planner (a short walk)."""
    # A million listings, the tier 1/100 of them, a page of 21.
    assert Reach.of(0, 0, 100.0, 1_000_000, 21).strategy == WORDS  # no match at all: nothing to walk to
    assert Reach.of(10, 10, 100.0, 1_000_000, 21).strategy == WORDS  # ~1,000 matches vs a 21,000-row walk
    assert Reach.of(1000, 1000, 100.0, 1_000_000, 21).strategy == PLANNED  # ~100,000 matches, a 210-row walk
    # A word of ~7,800 matches with a filter leaving 1,700 of them: collecting reads fewer rows.
    assert Reach.of(78, 17, 100.0, 1_000_000, 21).strategy == WORDS
    # Too many matches to collect, however few pass the filters: the planner uses the filters' indexes.
    assert Reach.of(COLLECT_LIMIT // 100 + 1, 0, 100.0, 1_000_000, 21).strategy == PLANNED


@pytest.mark.parametrize("sort", ["RELEVANCE", "POPULAR", "NEWEST", "TRENDING"])
async def test_collecting_and_walking_page_alike(system_pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch,
                                                 sort: str) -> None:
    """Whichever way a page finds its matches (collected and sorted, or as planned), every
    sort pages through the same sites in the same order, with and without filters, on both
    sides of the popular tier."""
    async with system_pool.acquire() as conn:
        tid, _ = await new_tenant(conn)
        owner = await person(conn, tid, "creator")
        ids = [await listed_site(conn, tid, owner, title=f"Kazoo {'kazoo ' * (i % 4)}session {i}",
                                 description="Humming." if i % 3 else "Humming on a kazoo, daily.",
                                 language="fr" if i % 2 else "en", category=("audio", "video", "text")[i % 3],
                                 tags=["kazoo"] if i % 5 == 0 else ["reeds"])
               for i in range(23)]
        for i, site in enumerate(ids):  # ties in popularity and trending, so site ids break them
            await conn.execute("update site_search set popularity = $2, trending = $3 where site_id = $1",
                               site, (i * 7) % 10, ((i * 3) % 5) / 2)
        await conn.execute("delete from site_search_top where site_id = any($1::bigint[])", ids[15:])
        monkeypatch.setattr(domain, "EXACT_LIMIT", 5)  # "kazoo" is broad here: the tier, then the others

        async def pages(text: str, strategy: str, **filters: Any) -> list[int]:
            monkeypatch.setattr(domain.Reach, "strategy", property(lambda self: strategy))
            q = domain.clean_query(text=text, sort=sort, tenant_id=tid, category=filters.get("category"),
                                   language=filters.get("language"))
            return (await every_page(conn, q, first=4))[0]

        for text, filters in [("kazoo", {}), ("kazoo", {"language": "fr"}), ("kazoo", {"category": "audio"}),
                              ("daily kazoo", {}), ("session", {"language": "en", "category": "text"})]:
            collected = await pages(text, domain.WORDS, **filters)
            planned = await pages(text, domain.PLANNED, **filters)
            assert collected == planned, (text, filters)
            assert len(collected) == len(set(collected)) > 0
        assert len(await pages("kazoo", domain.WORDS)) == 23
