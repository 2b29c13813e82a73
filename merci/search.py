"""Directory search over `site_search`, the narrow projection of listed sites.

Words go through PostgreSQL full-text search: every listing is indexed with its own
language's stemmer (English, French, or none) after unaccenting, title weighted above
tags above description; a word is matched in all three configurations at once, since
nobody says which language they type in. Typos are forgiven by the rules users know
from Meilisearch and Algolia (merci.spelling): each word also matches the indexed words
a typo or two away, the last one also as a prefix, and the exact word ranks above its
typos. `exact` searches the words as typed (websearch syntax: quotes, `-`, `or`).

Ranking reads each match's document, so RELEVANCE is bounded: words that match few
listings rank all their matches; broad words rank their matches among the most popular
listings (`site_search_top`, small enough to stay in memory) first, and list the rest
most popular first (`_relevance_page`).

Pages use keyset cursors on (sort value, site id): stable however deep one pages, and
never a large OFFSET. A page of words' matches in such an order either walks the order's
index until enough matches turn up (broad words: a few hundred rows) or collects the
matches and sorts them (rare words, whose walk would read most of the index); `Reach`
estimates both costs from the popular tier and picks.

Facets read `listing_counts` when there are no words, count the matches of words that
match few listings, and estimate the counts of broad words from the popular tier (saying
so).
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from merci import locks, spelling
from merci.errors import UserError
from merci.ids import MAX_ID
from merci.sites import CATEGORIES, SITE_COLUMNS

SORTS = ("RELEVANCE", "POPULAR", "NEWEST", "TRENDING")
MAX_QUERY = 200
MAX_WORDS = 12
RANKINGS_ACTOR = "directory.refresh_rankings"
RANKING_WINDOW_DAYS = 30
TRENDING_HALF_LIFE_DAYS = 7
# Matches that can be ranked, or counted, one by one within a few milliseconds. Words that
# match more are broad: see `_relevance_page` and `facets`.
EXACT_LIMIT = 1000
# A page in a keyset order (POPULAR, NEWEST, TRENDING, and the rest of a broad RELEVANCE
# search) either collects every match and sorts them, or walks the order's index until a
# page of matches turns up: for a rare word that walk reads most of the index (seconds on a
# million listings), for a broad one a few hundred rows. `Reach` chooses; reading more
# rows than this either way is slow.
COLLECT_LIMIT = 20000
LISTINGS = "(select coalesce(sum(n), 0)::bigint from listing_counts)"
# How much of the directory the relevance tier (`site_search_top`) is: 1/scale.
SCALE = "greatest(1, (select coalesce(sum(n), 0) from listing_counts)::real / merci_search_top_size())"
PARSED_CACHE = 4096

# (cursor tag, SQL expression, SQL type of the cursor value)
_ORDER = {
    "RELEVANCE": ("r", "rank", "real"),
    "POPULAR": ("p", "ss.popularity", "bigint"),
    "TRENDING": ("t", "ss.trending", "real"),
    "NEWEST": ("n", "ss.listed_at", "timestamptz"),
}
_WORD = re.compile(r"\w+", re.UNICODE)
# websearch_to_tsquery's operators: a query using them is searched as written.
_OPERATORS = re.compile(r'"|(?:^|\s)-\w|\sor\s', re.IGNORECASE)


@dataclass(frozen=True)
class SearchQuery:
    text: str | None = None
    category: str | None = None
    language: str | None = None
    tenant_id: int | None = None
    sort: str = "RELEVANCE"
    exact: bool = False  # the words as typed: no typos, no prefix

    @property
    def effective_sort(self) -> str:
        # Without words there is nothing to be relevant to: the most clicked come first.
        return "POPULAR" if self.sort == "RELEVANCE" and not self.text else self.sort


def clean_query(*, text: str | None, category: str | None, language: str | None, sort: str,
                tenant_id: int | None = None, exact: bool = False) -> SearchQuery:
    """Check search arguments; a bad one is a clear error naming it."""
    words = " ".join((text or "").split())
    if len(words) > MAX_QUERY:
        raise UserError("QUERY_TOO_LONG", f"a search has at most {MAX_QUERY} characters", "query")
    if category is not None:
        category = category.strip().lower()
        if category not in CATEGORIES:
            raise UserError("UNKNOWN_CATEGORY", f"unknown category {category!r}: use one of {', '.join(CATEGORIES)}",
                            "category")
    if language is not None:
        language = language.strip().lower()
        if len(language) != 2 or not (language.isascii() and language.isalpha()):
            raise UserError("INVALID_LANGUAGE", "language is a two-letter ISO 639-1 code such as en or fr",
                            "language")
    if sort not in SORTS:
        raise UserError("UNKNOWN_SORT", f"sort is one of {', '.join(SORTS)}", "sort")
    return SearchQuery(words or None, category, language, tenant_id, sort, exact)


# ------------------------------------------------------------------ cursors

# A RELEVANCE page comes from one of three orders (see `_relevance_page`); its cursor
# says which, so the next page continues in the same one.
ALL, TOP, OTHERS = "", "t", "o"


@dataclass(frozen=True)
class Position:
    value: Any  # the sort value of the last row shown
    site_id: int
    fuzzy: bool = False  # the words were corrected
    phase: str = ALL


def encode_cursor(tag: str, value: Any, site_id: int, fuzzy: bool, phase: str = ALL) -> str:
    shown = value.isoformat() if isinstance(value, datetime) else repr(value)
    raw = f"{tag}{phase}{'f' if fuzzy else ''}|{shown}|{site_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, tag: str) -> Position:
    bad = UserError("BAD_CURSOR", "`after` is not a cursor of this search", "after")
    try:
        raw = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()).decode()
        kind, value, site = raw.split("|")
        site_id = int(site)
        if not 0 < site_id <= MAX_ID:
            raise bad
        fuzzy = kind.endswith("f")
        phase = kind.removesuffix("f")[1:]
        if kind[:1] != tag or phase not in ((ALL, TOP, OTHERS) if tag == "r" else (ALL,)):
            raise bad
        parsed: Any
        if tag == "n":
            parsed = datetime.fromisoformat(value)
        elif tag == "p" or phase == OTHERS:
            parsed = int(value)
            if abs(parsed) > MAX_ID:
                raise bad
        else:
            parsed = float(value)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise bad from exc
    return Position(parsed, site_id, fuzzy, phase)


# ------------------------------------------------------------------ words


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower())[:MAX_WORDS]


_parsed: OrderedDict[str, str] = OrderedDict()


async def parse_words(conn: asyncpg.Connection, text: str) -> str:
    """The tsquery (as text) that `text` searches for, parsed by PostgreSQL once per
    process and text (merci_search_query is immutable). Statements then take it as a
    plain parameter: the planner sees the real words (so it can tell a rare word from a
    common one), and no plan reparses the text for every row it looks at."""
    found = _parsed.get(text)
    if found is None:
        found = await conn.fetchval("select merci_search_query($1)::text", text)
        _parsed[text] = found
        if len(_parsed) > PARSED_CACHE:
            _parsed.popitem(last=False)
    else:
        _parsed.move_to_end(text)
    return found


async def match_words(conn: asyncpg.Connection, q: SearchQuery, *,
                      looser: bool = False) -> tuple[str, spelling.Expansion | None]:
    """(tsquery text, expansion) of a search's words: typos forgiven (merci.spelling),
    or as written when asked (`exact`), when operators are used, or for stop words only."""
    assert q.text
    if not q.exact and not _OPERATORS.search(q.text):
        expansion = await spelling.expand(conn, words_of(q.text), looser=looser)
        if expansion is not None:
            return expansion.match, expansion
    return await parse_words(conn, q.text), None


# ------------------------------------------------------------------ the search


@dataclass
class SearchPage:
    rows: list[dict[str, Any]]  # site rows (SITE_COLUMNS) in order
    cursors: list[str]
    has_next_page: bool
    # The words searched instead of typed ones that no listing has ("writing" for "wrting").
    corrected_query: str | None = None
    # The tsquery (as text) the page matched, for facets and highlights; None without words.
    match: str | None = None


class _Args(list[Any]):
    """Statement parameters: `args.add(value)` appends one and returns its `$n`."""

    def add(self, value: Any) -> str:
        self.append(value)
        return f"${len(self)}"


def _filters(q: SearchQuery, args: _Args, *, tenant: bool = True, facets: bool = True) -> list[str]:
    where: list[str] = []
    if tenant and q.tenant_id is not None:
        where.append(f"ss.tenant_id = {args.add(q.tenant_id)}")
    if facets:
        if q.category is not None:
            where.append(f"ss.category = {args.add(q.category)}")
        if q.language is not None:
            where.append(f"ss.language = {args.add(q.language)}")
    return where


@functools.lru_cache(maxsize=64)
def _qualified(columns: str) -> str:
    return ", ".join(f"s.{c.strip()}" for c in columns.split(","))


def _with_sites(ranked: str, columns: str) -> str:
    """The site rows of `ranked` (site_id, sort_value), in its order: `columns` of them
    (SITE_COLUMNS or fewer; id always)."""
    return (f"select {_qualified(columns)}, m.sort_value from ({ranked}) m join sites s on s.id = m.site_id"
            " order by m.sort_value desc, m.site_id desc")


def _where(conditions: list[str]) -> str:
    return f" where {' and '.join(conditions)}" if conditions else ""


@dataclass(frozen=True)
class Reach:
    """What it costs to find a page of words' matches in a keyset order, in rows read,
    estimated from the popular tier's matches scaled up to the whole directory:
    collecting all the words' matches reads `words` rows; walking the order's index until
    a page of matches that pass the filters turns up reads about `walk`."""

    words: float
    walk: float

    @classmethod
    def of(cls, word_matches: int, filtered_matches: int, scale: float, listings: int, page: int) -> Reach:
        return cls(word_matches * scale, page * listings / max(filtered_matches * scale, 1))

    @property
    def strategy(self) -> str:
        """How a page in a keyset order finds its matches (`_matches`): by collecting
        them when that reads fewer rows than walking would, and not many; otherwise as
        the planner sees fit (which, the page being short, is mostly a walk). The walk's
        estimate assumes it reads the whole order, the filters being checked row by row;
        an index on a filter makes it shorter, and the planner knows those well."""
        return WORDS if self.words <= self.walk and self.words < COLLECT_LIMIT else PLANNED


# Collect the words' matches (through their index), then filter and sort them; or leave it
# to the planner (for broad words and a short page: walking the order's index).
WORDS, PLANNED = "words", "planned"


def _matches(words: str, filters: list[str], strategy: str) -> tuple[str, list[str]]:
    """(source, conditions) for `select … from {source} ss where {conditions}` over the
    listings that match `words` and `filters`. Collected, the source is fenced (`offset 0`
    keeps the planner from pushing conditions in or walking an index through it) and
    read whole."""
    if strategy == WORDS:
        return f"(select * from site_search ss where {words} offset 0)", filters
    return "site_search", [words, *filters]


def _keyset(source: str, key: str, where: list[str], limit: str) -> str:
    """(site_id, sort_value) of `source`'s rows matching `where`, in `key` order."""
    return (f"select ss.site_id, {key} as sort_value from {source} ss{_where(where)}"
            f" order by {key} desc, ss.site_id desc limit {limit}")


def sorted_sql(q: SearchQuery, match: str | None, *, first: int, after: Position | None,
               strategy: str = PLANNED, columns: str = SITE_COLUMNS) -> tuple[str, list[Any]]:
    """POPULAR, TRENDING, NEWEST: the sort index drives the scan and stops at the page,
    or, for words that match few listings (`Reach.strategy`), their matches are sorted."""
    _, key, sql_type = _ORDER[q.effective_sort]
    args = _Args()
    filters = _filters(q, args)
    source, where = "site_search", filters
    if match is not None:
        source, where = _matches(f"ss.document @@ {args.add(match)}::tsquery", filters, strategy)
    if after is not None:
        where.append(f"({key}, ss.site_id) < ({args.add(after.value)}::{sql_type}, {args.add(after.site_id)}::bigint)")
    return _with_sites(_keyset(source, key, where, args.add(first + 1)), columns), args


def _ranked_sql(table: str, where: list[str], rank: str, after: Position | None, args: _Args, limit: int) -> str:
    """Matches of `table` in `rank` order (ts_rank computed once per match)."""
    ranked = f"select ss.site_id, {rank} as sort_value from {table} ss{_where(where)}"
    if after is not None:
        # offset 0 keeps the subquery whole, so the cursor's test reuses each rank.
        ranked = (f"select * from ({ranked} offset 0) r where (r.sort_value, r.site_id)"
                  f" < ({args.add(after.value)}::real, {args.add(after.site_id)}::bigint)")
    return f"select * from ({ranked}) r order by r.sort_value desc, r.site_id desc limit {args.add(limit)}"


def _rank(tsq: str, expansion: spelling.Expansion | None, args: _Args) -> str:
    """RELEVANCE's sort value: ts_rank, below the count of words matched as typed and one
    typo away when typos were searched too (spelling.Expansion.rank_sql)."""
    if expansion is None:
        return f"ts_rank(ss.document, {tsq}, 1)"
    return expansion.rank_sql("ss.document", tsq, args.add)


def exact_sql(q: SearchQuery, match: str, *, limit: int, after: Position | None,
              strategy: str = PLANNED, columns: str = SITE_COLUMNS,
              expansion: spelling.Expansion | None = None) -> tuple[str, list[Any]]:
    """Every match, ranked: for words that match few listings."""
    args = _Args()
    tsq = f"{args.add(match)}::tsquery"
    source, where = _matches(f"ss.document @@ {tsq}", _filters(q, args), strategy)
    ranked = _ranked_sql(source, where, _rank(tsq, expansion, args), after, args, limit)
    return _with_sites(ranked, columns), args


def _all(conditions: list[str]) -> str:
    return " and ".join(conditions) or "true"


def top_sql(q: SearchQuery, match: str, *, limit: int, after: Position | None,
            columns: str = SITE_COLUMNS, expansion: spelling.Expansion | None = None) -> tuple[str, list[Any]]:
    """The matches among the most popular listings, ranked. A first page also counts the
    tier's matches (on every row, or on a row of nulls when none is shown): all of them
    (`word_matches`), those of the tenant asked for (`top_matches`, which with `scale`,
    how much of the directory the tier is, tells whether the words are broad: `is_broad`),
    and those every filter leaves (`filtered_matches`)."""
    args = _Args()
    tsq = f"{args.add(match)}::tsquery"
    rank = _rank(tsq, expansion, args)
    if after is not None:
        where = [f"ss.document @@ {tsq}", *_filters(q, args)]
        return _with_sites(_ranked_sql("site_search_top", where, rank, after, args, limit), columns), args
    # The tier's matches are read once; the counts and the page all come from them.
    tenant, every = _all(_filters(q, args, facets=False)), _filters(q, args)
    ranked = _ranked_sql("tier", every, rank, None, args, limit)
    return (f"with tier as materialized (select ss.* from site_search_top ss where ss.document @@ {tsq})"
            f" select c.*, {SCALE} as scale, {LISTINGS} as listings, p.* from (select count(*) as word_matches,"
            f" count(*) filter (where {tenant}) as top_matches, count(*) filter (where {_all(every)})"
            f" as filtered_matches from tier ss) c"
            f" left join ({_with_sites(ranked, columns)}) p on true order by p.sort_value desc, p.id desc"), args


def others_sql(q: SearchQuery, match: str, *, limit: int, after: Position | None,
               strategy: str = PLANNED, columns: str = SITE_COLUMNS) -> tuple[str, list[Any]]:
    """The matches outside the most popular listings, most popular first."""
    args = _Args()
    source, where = _matches(f"ss.document @@ {args.add(match)}::tsquery", _filters(q, args), strategy)
    where.append("not exists (select 1 from site_search_top t where t.site_id = ss.site_id)")
    if after is not None:
        value, site_id = args.add(after.value), args.add(after.site_id)
        where.append(f"(ss.popularity, ss.site_id) < ({value}::bigint, {site_id}::bigint)")
    return _with_sites(_keyset(source, "ss.popularity", where, args.add(limit)), columns), args


def reach_sql(q: SearchQuery, match: str) -> tuple[str, list[Any]]:
    """The tier's matches of words, all and filtered, and what `Reach.of` needs besides."""
    args = _Args()
    words = f"ss.document @@ {args.add(match)}::tsquery"
    return (f"select count(*) as word_matches, count(*) filter (where {_all(_filters(q, args))}) as filtered_matches,"
            f" {SCALE} as scale, {LISTINGS} as listings from site_search_top ss where {words}"), args


async def reach(conn: asyncpg.Connection, q: SearchQuery, match: str, page: int) -> Reach:
    sql, args = reach_sql(q, match)
    r = await conn.fetchrow(sql, *args)
    return Reach.of(r["word_matches"], r["filtered_matches"], r["scale"], r["listings"], page)


async def _rows(conn: asyncpg.Connection, built: tuple[str, list[Any]], phase: str) -> list[dict[str, Any]]:
    sql, args = built
    return [dict(r) | {"phase": phase} for r in await conn.fetch(sql, *args)]


def is_broad(top_matches: int, scale: float) -> bool:
    """Whether words that match `top_matches` of the most popular listings (the tier being
    1/`scale` of the directory) match too many listings in all to rank or count each one."""
    return top_matches * scale >= EXACT_LIMIT


async def _relevance_page(conn: asyncpg.Connection, q: SearchQuery, match: str, *, first: int,
                          after: Position | None, columns: str,
                          expansion: spelling.Expansion | None) -> list[dict[str, Any]]:
    """RELEVANCE over words. Ranking reads every match's document, so it is bounded:

    - words that match few listings (fewer than about EXACT_LIMIT) rank all their matches;
    - broad words rank their matches among the most popular listings (`site_search_top`,
      a small table that stays in memory) first, then list the other matches most
      popular first, which needs no ranking and stops at the page.

    Which applies is decided on the first page by counting the tier's matches (the
    tenant filter applied, not category and language: they narrow what is shown, not
    what has to be searched); later pages follow their cursor's phase."""
    n = first + 1
    if after is not None and after.phase == ALL:
        how = (await reach(conn, q, match, n)).strategy
        return await _rows(conn, exact_sql(q, match, limit=n, after=after, strategy=how, columns=columns,
                                          expansion=expansion), ALL)
    if after is not None and after.phase == OTHERS:
        how = (await reach(conn, q, match, n)).strategy
        return await _rows(conn, others_sql(q, match, limit=n, after=after, strategy=how, columns=columns), OTHERS)
    rows = await _rows(conn, top_sql(q, match, limit=n, after=after, columns=columns, expansion=expansion), TOP)
    strategy: str | None = None
    if after is None:
        first_row = rows[0]
        scale = first_row["scale"]
        strategy = Reach.of(first_row["word_matches"], first_row["filtered_matches"], scale,
                            first_row["listings"], n).strategy
        if not is_broad(first_row["top_matches"], scale):
            return await _rows(conn, exact_sql(q, match, limit=n, after=None, strategy=strategy, columns=columns,
                                              expansion=expansion), ALL)
        rows = [r for r in rows if r["id"] is not None]
    if len(rows) < n:
        if strategy is None:
            strategy = (await reach(conn, q, match, n)).strategy
        rows += await _rows(conn, others_sql(q, match, limit=n - len(rows), after=None, strategy=strategy,
                                          columns=columns), OTHERS)
    return rows


async def _page(conn: asyncpg.Connection, q: SearchQuery, match: str | None, *, first: int,
                after: Position | None, columns: str,
                expansion: spelling.Expansion | None = None) -> list[dict[str, Any]]:
    if match is None:
        return await _rows(conn, sorted_sql(q, None, first=first, after=after, columns=columns), ALL)
    if q.effective_sort == "RELEVANCE":
        return await _relevance_page(conn, q, match, first=first, after=after, columns=columns,
                                     expansion=expansion)
    strategy = (await reach(conn, q, match, first + 1)).strategy
    return await _rows(conn, sorted_sql(q, match, first=first, after=after, strategy=strategy, columns=columns), ALL)


async def search(conn: asyncpg.Connection, q: SearchQuery, *, first: int, after: str | None,
                 columns: str = SITE_COLUMNS) -> SearchPage:
    """A page of listings: `columns` of their site rows (SITE_COLUMNS or fewer; id always),
    a cursor for each, and whether more follow.

    When the words with the typos the rules allow match nothing, the first page tries
    once more allowing one more typo per word (spelling, `looser`), and its cursors say
    so: the next pages search the same way."""
    tag = _ORDER[q.effective_sort][0]
    position = decode_cursor(after, tag) if after is not None else None
    looser = position is not None and position.fuzzy and not q.exact
    match: str | None = None
    expansion: spelling.Expansion | None = None
    if q.text:
        match, expansion = await match_words(conn, q, looser=looser)
    rows = await _page(conn, q, match, first=first, after=position, columns=columns, expansion=expansion)
    if not rows and q.text and position is None and not q.exact and expansion is not None:
        retry, wider = await match_words(conn, q, looser=True)
        if retry != match:
            (match, expansion), looser = (retry, wider), True
            rows = await _page(conn, q, match, first=first, after=None, columns=columns, expansion=expansion)
    page = rows[:first]
    return SearchPage(
        rows=page,
        cursors=[encode_cursor(tag, r["sort_value"], r["id"], looser, r["phase"]) for r in page],
        has_next_page=len(rows) > first,
        corrected_query=expansion.corrected if expansion is not None else None,
        match=match,
    )


# ------------------------------------------------------------------ facets


@dataclass
class Facets:
    total: int
    categories: list[tuple[str, int]] = field(default_factory=list)
    languages: list[tuple[str, int]] = field(default_factory=list)
    # Broad words: counted among the most popular listings and scaled up to the directory.
    estimated: bool = False


async def facets(conn: asyncpg.Connection, q: SearchQuery, match: str | None) -> Facets:
    """Counts per category and language. Each facet ignores its own filter (so one can
    switch category and see how many each has) and applies the others.

    Without words the counts come from `listing_counts`. Words that match few listings
    are counted exactly; broad ones (see `_relevance_page`) would mean reading a hundred
    thousand rows, so their counts are the tier's, scaled to the whole directory, and
    say they are estimates."""
    args = _Args()
    where = _filters(q, args, facets=False)
    estimated = False
    if match is None:
        sql = (f"select ss.category, ss.language, sum(ss.n)::bigint as n from listing_counts ss{_where(where)}"
               " group by 1, 2")
        cells = [(r["category"], r["language"], int(r["n"])) for r in await conn.fetch(sql, *args)]
    else:
        where.append(f"ss.document @@ {args.add(match)}::tsquery")
        top = await conn.fetch(f"select ss.category, ss.language, count(*) as n, {SCALE} as scale"
                               f" from site_search_top ss{_where(where)} group by 1, 2", *args)
        if top and is_broad(sum(r["n"] for r in top), top[0]["scale"]):
            cells = [(r["category"], r["language"], round(r["n"] * r["scale"])) for r in top]
            estimated = True
        else:
            sql = f"select ss.category, ss.language, count(*) as n from site_search ss{_where(where)} group by 1, 2"
            cells = [(r["category"], r["language"], int(r["n"])) for r in await conn.fetch(sql, *args)]
    by_category: dict[str, int] = {}
    by_language: dict[str, int] = {}
    total = 0
    for category, language, n in cells:
        if n <= 0:
            continue
        if q.language is None or language == q.language:
            by_category[category] = by_category.get(category, 0) + n
        if q.category is None or category == q.category:
            by_language[language] = by_language.get(language, 0) + n
        if (q.language is None or language == q.language) and (q.category is None or category == q.category):
            total += n

    def ordered(counts: dict[str, int]) -> list[tuple[str, int]]:
        return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))

    return Facets(total, ordered(by_category), ordered(by_language), estimated)


# ------------------------------------------------------------------ rankings


async def refresh_rankings(conn: asyncpg.Connection, *, now: datetime | None = None) -> int:
    """Recompute POPULAR (clicks of the last 30 days) and TRENDING (the same clicks, each
    worth half as much per week of age) for every listed site, and with them the relevance
    tier (the most popular listings); returns sites changed.

    Set-based and idempotent; the advisory lock keeps two workers from doing it at once.
    Reads clicks directly (the money core owns them) and touches only changed rows.
    """
    async with conn.transaction():
        if not await conn.fetchval("select pg_try_advisory_xact_lock($1)", locks.RANKINGS):
            return 0
        status = await conn.execute(
            """with recent as (
                 select t.site_id, count(*) as clicks,
                        sum(power(0.5, extract(epoch from (coalesce($1, now()) - c.accepted_at))
                                       / ($3 * 86400.0))) as trending
                   from clicks c join things t on t.id = c.thing_id
                  -- (the window's first month in UTC, as clicks' periods are, not the session's zone)
                  where c.period >= date_trunc('month', (coalesce($1, now()) - make_interval(days => $2))
                                                        at time zone 'UTC')::date
                    and c.accepted_at > coalesce($1, now()) - make_interval(days => $2)
                    and c.accepted_at <= coalesce($1, now())
                    and t.site_id is not null
                  group by t.site_id),
               target as (
                 select ids.site_id, coalesce(r.clicks, 0) as popularity, coalesce(r.trending, 0)::real as trending
                   from (select site_id from site_search where popularity > 0 union select site_id from recent) ids
                   left join recent r on r.site_id = ids.site_id)
               update site_search ss set popularity = t.popularity, trending = t.trending
                 from target t
                where ss.site_id = t.site_id
                  and (ss.popularity, ss.trending) is distinct from (t.popularity, t.trending)""",
            now, RANKING_WINDOW_DAYS, TRENDING_HALF_LIFE_DAYS)
        # The relevance tier follows the new popularity.
        await conn.execute("select merci_refresh_search_top()")
        await conn.execute("update directory_state set rankings_at = coalesce($1, now())", now)
    return int(status.split()[-1])
