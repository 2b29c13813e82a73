"""Directory search over `site_search`, the narrow projection of listed sites.

Words go through PostgreSQL full-text search: every listing is indexed with its own
language's stemmer (English, French, or none) after unaccenting, title weighted above
tags above description; a query is parsed with all three configurations at once, since
nobody says which language they type in. When the words match nothing, each word is
replaced by its nearest indexed lexeme (trigram similarity over `search_lexemes`) and
the search runs again: "podcsat" finds "podcast".

Pages use keyset cursors on (sort value, site id): stable however deep one pages, and
never a large OFFSET. Facets read `listing_counts` when there are no words, and count
the matches otherwise.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from merci.errors import UserError
from merci.sites import CATEGORIES, SITE_COLUMNS

SORTS = ("RELEVANCE", "POPULAR", "NEWEST", "TRENDING")
MAX_QUERY = 200
MAX_WORDS = 12
# Below this similarity a lexeme is no correction of a word, just another word.
MIN_SIMILARITY = 0.3
RANKINGS_ACTOR = "directory.refresh_rankings"
RANKING_WINDOW_DAYS = 30
TRENDING_HALF_LIFE_DAYS = 7

# (cursor tag, SQL expression, SQL type of the cursor value)
_ORDER = {
    "RELEVANCE": ("r", "rank", "real"),
    "POPULAR": ("p", "ss.popularity", "bigint"),
    "TRENDING": ("t", "ss.trending", "real"),
    "NEWEST": ("n", "ss.listed_at", "timestamptz"),
}
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class SearchQuery:
    text: str | None = None
    category: str | None = None
    language: str | None = None
    tenant_id: int | None = None
    sort: str = "RELEVANCE"

    @property
    def effective_sort(self) -> str:
        # Without words there is nothing to be relevant to: the most clicked come first.
        return "POPULAR" if self.sort == "RELEVANCE" and not self.text else self.sort


def clean_query(*, text: str | None, category: str | None, language: str | None, sort: str,
                tenant_id: int | None = None) -> SearchQuery:
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
    return SearchQuery(words or None, category, language, tenant_id, sort)


# ------------------------------------------------------------------ cursors


def encode_cursor(tag: str, value: Any, site_id: int, fuzzy: bool) -> str:
    shown = value.isoformat() if isinstance(value, datetime) else repr(value)
    raw = f"{tag}{'f' if fuzzy else ''}|{shown}|{site_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, tag: str) -> tuple[Any, int, bool]:
    bad = UserError("BAD_CURSOR", "`after` is not a cursor of this search", "after")
    try:
        raw = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode()).decode()
        kind, value, site = raw.split("|")
        site_id = int(site)
        if kind.rstrip("f") != tag:
            raise bad
        parsed: Any
        if tag == "n":
            parsed = datetime.fromisoformat(value)
        elif tag == "p":
            parsed = int(value)
        else:
            parsed = float(value)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise bad from exc
    return parsed, site_id, kind.endswith("f")


# ------------------------------------------------------------------ words


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower())[:MAX_WORDS]


def _tsquery_literal(lexemes: Sequence[str]) -> str:
    """`'a' & 'b'`: lexemes quoted for tsquery input (quotes and backslashes doubled)."""
    return " & ".join("'" + w.replace("\\", "\\\\").replace("'", "''") + "'" for w in lexemes)


async def correct(conn: asyncpg.Connection, text: str) -> tuple[str, str] | None:
    """(tsquery text, corrected words) made of the indexed lexemes nearest to each word."""
    words = [w for w in words_of(text) if len(w) >= 3]
    if not words:
        return None
    rows = await conn.fetch(
        "select q.w, best.lexeme, similarity(best.lexeme, q.w) as sim"
        "  from unnest($1::text[]) with ordinality q(w, n)"
        "  cross join lateral (select lexeme from search_lexemes"
        "                       order by lexeme <-> merci_unaccent(q.w) limit 1) best"
        " order by q.n", words)
    lexemes = [r["lexeme"] for r in rows if r["sim"] >= MIN_SIMILARITY]
    if len(lexemes) != len(words):
        return None  # some word has no near match: better nothing than a guess
    return _tsquery_literal(lexemes), " ".join(lexemes)


# ------------------------------------------------------------------ the search


@dataclass
class SearchPage:
    rows: list[dict[str, Any]]  # site rows (SITE_COLUMNS) in order
    cursors: list[str]
    has_next_page: bool
    corrected_query: str | None = None
    # The match condition of the page, for facets: ("words", text) or ("tsquery", literal).
    match: tuple[str, str] | None = None


def _filters(q: SearchQuery, args: list[Any], *, facets: bool = False) -> list[str]:
    where: list[str] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if q.tenant_id is not None:
        where.append(f"ss.tenant_id = {arg(q.tenant_id)}")
    if not facets:
        if q.category is not None:
            where.append(f"ss.category = {arg(q.category)}")
        if q.language is not None:
            where.append(f"ss.language = {arg(q.language)}")
    return where


def _match_sql(match: tuple[str, str], args: list[Any]) -> str:
    kind, value = match
    args.append(value)
    return f"merci_search_query(${len(args)})" if kind == "words" else f"${len(args)}::tsquery"


def page_sql(q: SearchQuery, match: tuple[str, str] | None, *, first: int,
             after: tuple[Any, int] | None) -> tuple[str, list[Any]]:
    """One statement: the page's site rows, in order, with their sort values."""
    sort = q.effective_sort
    _, key, sql_type = _ORDER[sort]
    args: list[Any] = []
    where = _filters(q, args)
    rank = "0::real"
    if match is not None:
        tsq = _match_sql(match, args)
        where.append(f"ss.document @@ {tsq}")
        if sort == "RELEVANCE":
            # Normalization 1: long descriptions do not outweigh a title that says it.
            rank = f"ts_rank(ss.document, {tsq}, 1)"
    inner = (f"select ss.site_id, ss.popularity, ss.trending, ss.listed_at, {rank} as rank"
             f" from site_search ss{' where ' + ' and '.join(where) if where else ''}")
    outer_where = ""
    if after is not None:
        args.extend(after)
        value_col = "rank" if sort == "RELEVANCE" else key.removeprefix("ss.")
        outer_where = f" where (m.{value_col}, m.site_id) < (${len(args) - 1}::{sql_type}, ${len(args)}::bigint)"
    order_col = "rank" if sort == "RELEVANCE" else key.removeprefix("ss.")
    args.append(first + 1)
    if sort == "RELEVANCE":
        ranked = (f"select * from ({inner}) m{outer_where} order by m.rank desc, m.site_id desc"
                  f" limit ${len(args)}")
    else:
        # Without a rank to compute, the sort index drives the scan and stops at the page.
        inner_where = list(where)
        if after is not None:
            inner_where.append(f"({key}, ss.site_id) < (${len(args) - 2}::{sql_type}, ${len(args) - 1}::bigint)")
        ranked = (f"select ss.site_id, ss.popularity, ss.trending, ss.listed_at, 0::real as rank from site_search ss"
                  f"{' where ' + ' and '.join(inner_where) if inner_where else ''}"
                  f" order by {key} desc, ss.site_id desc limit ${len(args)}")
    columns = ", ".join(f"s.{c.strip()}" for c in SITE_COLUMNS.split(","))
    sql = (f"select {columns}, m.rank, m.popularity as sort_popularity, m.trending as sort_trending,"
           f" m.listed_at as sort_listed_at from ({ranked}) m join sites s on s.id = m.site_id"
           f" order by m.{order_col} desc, m.site_id desc")
    return sql, args


async def search(conn: asyncpg.Connection, q: SearchQuery, *, first: int, after: str | None) -> SearchPage:
    sort = q.effective_sort
    tag = _ORDER[sort][0]
    position: tuple[Any, int] | None = None
    fuzzy = False
    if after is not None:
        value, site_id, fuzzy = decode_cursor(after, tag)
        position = (value, site_id)
    match: tuple[str, str] | None = None
    corrected: str | None = None
    if q.text:
        match = ("words", q.text)
        if fuzzy:
            fixed = await correct(conn, q.text)
            if fixed is None:
                return SearchPage([], [], False)
            match, corrected = ("tsquery", fixed[0]), fixed[1]
    sql, args = page_sql(q, match, first=first, after=position)
    rows = [dict(r) for r in await conn.fetch(sql, *args)]
    if not rows and q.text and position is None and not fuzzy:
        fixed = await correct(conn, q.text)
        if fixed is not None and fixed[1] != " ".join(words_of(q.text)):
            match, corrected, fuzzy = ("tsquery", fixed[0]), fixed[1], True
            sql, args = page_sql(q, match, first=first, after=None)
            rows = [dict(r) for r in await conn.fetch(sql, *args)]
    page = rows[:first]
    value_of = {"r": "rank", "p": "sort_popularity", "t": "sort_trending", "n": "sort_listed_at"}[tag]
    return SearchPage(
        rows=page,
        cursors=[encode_cursor(tag, r[value_of], r["id"], fuzzy) for r in page],
        has_next_page=len(rows) > first,
        corrected_query=corrected,
        match=match,
    )


# ------------------------------------------------------------------ facets


@dataclass
class Facets:
    total: int
    categories: list[tuple[str, int]] = field(default_factory=list)
    languages: list[tuple[str, int]] = field(default_factory=list)


async def facets(conn: asyncpg.Connection, q: SearchQuery, match: tuple[str, str] | None) -> Facets:
    """Counts per category and language. Each facet ignores its own filter (so one can
    switch category and see how many each has) and applies the others."""
    args: list[Any] = []
    where = _filters(q, args, facets=True)
    if match is None:
        sql = ("select ss.category, ss.language, sum(ss.n)::bigint as n from listing_counts ss"
               f"{' where ' + ' and '.join(where) if where else ''} group by 1, 2")
    else:
        where.append(f"ss.document @@ {_match_sql(match, args)}")
        sql = ("select ss.category, ss.language, count(*) as n from site_search ss"
               f" where {' and '.join(where)} group by 1, 2")
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

    return Facets(total, ordered(by_category), ordered(by_language))


# ------------------------------------------------------------------ rankings


async def refresh_rankings(conn: asyncpg.Connection, *, now: datetime | None = None) -> int:
    """Recompute POPULAR (clicks of the last 30 days) and TRENDING (the same clicks, each
    worth half as much per week of age) for every listed site; returns sites changed.

    Set-based and idempotent; the advisory lock keeps two workers from doing it at once.
    Reads clicks directly (the money core owns them) and touches only changed rows.
    """
    async with conn.transaction():
        if not await conn.fetchval("select pg_try_advisory_xact_lock(7310004)"):
            return 0
        status = await conn.execute(
            """with recent as (
                 select t.site_id, count(*) as clicks,
                        sum(power(0.5, extract(epoch from (coalesce($1, now()) - c.accepted_at))
                                       / ($3 * 86400.0))) as trending
                   from clicks c join things t on t.id = c.thing_id
                  where c.period >= date_trunc('month', coalesce($1, now()) - make_interval(days => $2))::date
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
        await conn.execute("update directory_state set rankings_at = coalesce($1, now())", now)
    return int(status.split()[-1])
