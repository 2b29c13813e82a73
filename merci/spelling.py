"""Typo tolerance for directory searches, by the rules users know from Meilisearch and
Algolia:

- a typo is an insertion, a deletion, a substitution or a transposition of letters
  (Damerau-Levenshtein distance, unrestricted: "gatuex" is two from "gateaux");
- words of 5 letters or more may have one typo, of 9 or more two; shorter words, and
  words with digits (codes, numbers: a typo there is another one), match as typed;
- accents and case are never typos (words are compared unaccented and lowercased);
- the last word also matches as a prefix ("macar" finds "macarons"), from 3 letters;
- a word matches exactly above its typos: the ranking (`rank_sql`) counts, per word,
  2 for the word itself (or a word of the same stem), 1 for a word one typo away or a
  completion of the prefix, 0 for two typos; ts_rank only orders within a count.

Typos are found among the words listings are written with (`search_words`: unaccented,
unstemmed, each with the lexemes it is indexed as in every configuration), so they apply
to every listing alike whatever its language, and a correction names a word people
read, never a stem. Candidates come from a deletion neighbourhood (SymSpell,
`search_word_variants`): a btree lookup of the typed word's own variants, then kept only
within the allowed distance here. One statement per search.

When the words so allowed match nothing, a search tries once more allowing one more
typo per word of 4 letters or more (`looser`): "gatuex" has 6 letters but is two typos
from "gâteaux". Such a search says which words it searched instead (`corrected`), as
does any search where a typed word is not in the directory but a near one is.

Bounds, as anyone may type anything: at most MAX_WORDS words (merci.search), typos only
in words of at most MAX_TYPO_LETTERS, at most MAX_VARIANTS variants looked up in all and
MAX_CANDIDATES matches read, NEAREST typo'd words and COMPLETIONS completions kept per
word, so a query's tsquery stays small whatever is typed.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

ONE_TYPO, TWO_TYPOS = 5, 9  # letters a word needs for one typo, for two
MIN_PREFIX = 3  # letters the last word needs to match as a prefix
MAX_TYPO_LETTERS = 24
MAX_VARIANTS = 2000  # variants looked up for a whole query (a 24-letter word has 301)
MAX_CANDIDATES = 256  # indexed words read for a whole query (shared among its words, at least 16 each)
NEAREST = 12  # typo'd words kept per word, nearest first
COMPLETIONS = 24  # completions of the last word searched by their lexemes (more: by its prefix lexeme)


def allowed_typos(word: str, *, looser: bool = False) -> int:
    """Typos a word (unaccented, lowercased) may have."""
    if not word.isalpha() or len(word) > MAX_TYPO_LETTERS:
        return 0
    n = len(word)
    typos = 2 if n >= TWO_TYPOS else 1 if n >= ONE_TYPO else 0
    if looser and n >= ONE_TYPO - 1:
        typos = min(2, typos + 1)
    return typos


def variant_count(n: int, d: int) -> int:
    """Upper bound of a word's variants with up to `d` of its `n` letters deleted."""
    return 1 + (n if d >= 1 else 0) + (n * (n - 1) // 2 if d >= 2 else 0)


def variants(word: str, d: int) -> set[str]:
    """The word and its variants with up to `d` letters deleted (merci_word_variants)."""
    found = {word}
    edge = {word}
    for _ in range(d):
        edge = {w[:i] + w[i + 1:] for w in edge for i in range(len(w))}
        found |= edge
    found.discard("")
    return found


def may_be_near(a: str, b: str, k: int) -> bool:
    """False when `a` and `b` are surely more than `k` typos apart, found cheaply: their
    lengths, or the letters one has that the other lacks (a typo adds at most one such
    letter to each side, a transposition none), differ by more."""
    if abs(len(a) - len(b)) > k:
        return False
    extra_a, extra_b = Counter(a), Counter(b)
    extra_a.subtract(b)
    extra_b.subtract(a)
    return sum(v for v in extra_a.values() if v > 0) <= k and sum(v for v in extra_b.values() if v > 0) <= k


def distance(a: str, b: str) -> int:
    """Damerau-Levenshtein distance, unrestricted (Lowrance-Wagner): insertions,
    deletions, substitutions and transpositions of adjacent letters, where a transposed
    pair may also be edited ("ca" -> "abc" is 2), as the typos people make are."""
    inf = len(a) + len(b)
    last_row: dict[str, int] = {}
    d = [[inf] * (len(b) + 2) for _ in range(len(a) + 2)]
    for i in range(len(a) + 1):
        d[i + 1][1] = i
    for j in range(len(b) + 1):
        d[1][j + 1] = j
    for i in range(1, len(a) + 1):
        last_match_col = 0
        for j in range(1, len(b) + 1):
            k = last_row.get(b[j - 1], 0)
            col = last_match_col
            cost = 1
            if a[i - 1] == b[j - 1]:
                cost = 0
                last_match_col = j
            d[i + 1][j + 1] = min(d[i][j] + cost, d[i + 1][j] + 1, d[i][j + 1] + 1,
                                  d[k][col] + (i - k - 1) + 1 + (j - col - 1))
        last_row[a[i - 1]] = i
    return d[len(a) + 1][len(b) + 1]


def _literal(lexeme: str, prefix: bool = False) -> str:
    quoted = "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"
    return quoted + ":*" if prefix else quoted


def _any(lexemes: Sequence[str], prefix: str | None = None) -> str:
    terms = [_literal(x) for x in lexemes] + ([_literal(prefix, True)] if prefix else [])
    return terms[0] if len(terms) == 1 else "(" + " | ".join(terms) + ")"


@dataclass(frozen=True)
class Word:
    """A typed word and what it matches: its own lexemes, those of the indexed words one
    typo away (or completing it, for the last word), and those two typos away."""

    typed: str
    normal: str  # unaccented, lowercased
    exact: tuple[str, ...]
    near: tuple[str, ...] = ()
    far: tuple[str, ...] = ()
    prefix: str | None = None
    known: bool = True  # some listing has the word itself (or a word of its stem)
    nearest: str | None = None  # the nearest indexed word, as written, when it is not known

    @property
    def expanded(self) -> bool:
        return bool(self.near or self.far or self.prefix)

    def tsquery(self) -> str:
        return _any([*self.exact, *self.near, *self.far], self.prefix)


@dataclass(frozen=True)
class Expansion:
    """What a search's words match: `match` (tsquery text) for the statements, the words
    for ranking exact above typos, and the words searched instead of unknown ones."""

    words: tuple[Word, ...]
    match: str
    corrected: str | None = None

    def rank_sql(self, document: str, tsquery: str, add: Callable[[Any], str]) -> str:
        """SQL ranking `document` (a tsvector expression) that matches `tsquery` (this
        expansion's `match`, as SQL): 2 per word matched as typed, 1 per word matched one
        typo away or as a prefix, 0 for two typos, then ts_rank (below 1) within the same
        count. `add(value) -> "$n"` adds a parameter."""
        checks: list[str] = []
        for w in self.words:
            if not w.expanded:
                continue  # matched as typed by every match: the same count for all
            checks.append(f"({document} @@ {add(_any(w.exact))}::tsquery)::int")
            checks.append(f"({document} @@ {add(_any([*w.exact, *w.near], w.prefix))}::tsquery)::int")
        # real, as ts_rank is: a cursor holds the value as a real and compares it so.
        return f"({' + '.join([*checks, f'least(ts_rank({document}, {tsquery}, 1), 0.999)'])})::real"


@dataclass
class _Found:
    """What the lookup found for one word."""

    norm: str
    exact: tuple[str, ...]
    stop: bool
    known: bool
    typos: list[asyncpg.Record] = field(default_factory=list)
    completions: list[asyncpg.Record] = field(default_factory=list)


# One statement: each word unaccented, its lexemes, whether it is a stop word or known,
# and the indexed words its variants reach, or that complete it (the last word).
_LOOKUP = """
with q as materialized (
  select n, norm, d, exact,
         (numnode(plainto_tsquery('merci_en', norm)) = 0 or numnode(plainto_tsquery('merci_fr', norm)) = 0) as stop,
         exists (select 1 from search_lexemes l where l.lexeme = any(exact collate "default")) as known,
         -- ASCII words' variants come from Python (`variants`); others' are made here.
         case when d > 0 and norm !~ '^[a-z]*$' then merci_word_variants(norm, d) end as variants
    from (select n, norm, d, merci_word_lexemes(norm) as exact
            from (select n, lower(merci_unaccent(w)) collate "C" as norm, d
                    from unnest($1::text[], $2::int[]) with ordinality u(w, d, n)) u
           offset 0) x)  -- (each word's lexemes computed once: the lookups below take them as values)
select q.n, q.norm, q.exact, q.stop, q.known, c.word, c.shown, c.lexemes, c.completes
  from q left join lateral (
      select sw.word, sw.shown, sw.lexemes, false as completes
        from (select distinct v.word from search_word_variants v
               where q.d > 0 and v.variant = any(coalesce(q.variants, array(
                       select p.v from unnest($6::int[], $7::text[]) p(n, v) where p.n = q.n)))
               limit $4) m
        join search_words sw on sw.word = m.word
      union all
      (select sw.word, sw.shown, sw.lexemes, true from search_words sw
        where q.n = $3 and sw.word > q.norm and sw.word < q.norm || chr(1114111)
        order by sw.word limit $5)
  ) c on true
 order by q.n, c.word"""


# Expansions are kept a while per process, as merci.search keeps parsed words: a query
# typed again (the next page, a popular search, the same words while typing on) costs no
# lookup. A word listed since is reached by typos once its query's entry expires (words
# as typed are searched without the lookup, so a new listing is found at once).
CACHE_SIZE = 4096
CACHE_SECONDS = 60.0
_cache: OrderedDict[tuple[tuple[str, ...], bool, bool], tuple[float, Expansion | None]] = OrderedDict()


async def expand(conn: asyncpg.Connection, words: Sequence[str], *, looser: bool = False,
                 prefix: bool = True) -> Expansion | None:
    """The words' expansion (None when no word has anything to match: stop words only
    are searched as typed). `prefix`: the last word also matches as a prefix."""
    if not words:
        return None
    key = (tuple(words), looser, prefix)
    now = time.monotonic()
    kept = _cache.get(key)
    if kept is not None and now - kept[0] < CACHE_SECONDS:
        _cache.move_to_end(key)
        return kept[1]
    found = await _expand(conn, words, looser=looser, prefix=prefix)
    _cache[key] = (now, found)
    _cache.move_to_end(key)
    if len(_cache) > CACHE_SIZE:
        _cache.popitem(last=False)
    return found


async def _expand(conn: asyncpg.Connection, words: Sequence[str], *, looser: bool,
                  prefix: bool) -> Expansion | None:
    budget = MAX_VARIANTS
    typos: list[int] = []
    for w in words:
        d = allowed_typos(w, looser=looser)
        # A lowercased word's length is about its unaccented length ("œ" gives "oe": one more).
        while d and variant_count(len(w) + 2, d) > budget:
            d -= 1
        budget -= variant_count(len(w) + 2, d)
        typos.append(d)
    last = len(words) if prefix and len(words[-1]) >= MIN_PREFIX else 0
    # Variants of plain ASCII words are made here (as lowercase as the statement's own
    # unaccenting would leave them): microseconds, where PL/pgSQL takes up to half a ms.
    slots: list[int] = []
    keys: list[str] = []
    for n, (w, d) in enumerate(zip(words, typos, strict=True), start=1):
        if d and w.isascii() and w.isalpha():
            mine = variants(w, d)
            slots += [n] * len(mine)
            keys += mine
    per_word = max(16, MAX_CANDIDATES // len(words))
    rows = await conn.fetch(_LOOKUP, list(words), typos, last, per_word, COMPLETIONS + 1, slots, keys)
    found: dict[int, _Found] = {}
    for r in rows:
        slot = found.setdefault(r["n"], _Found(r["norm"], tuple(r["exact"]), r["stop"], r["known"]))
        if r["word"] is not None and r["word"] != r["norm"]:
            (slot.completions if r["completes"] else slot.typos).append(r)
    out: list[Word] = []
    meant: list[Word] = []
    for n, typed in enumerate(words, start=1):
        slot = found[n]
        norm, allowed = slot.norm, typos[n - 1]
        seen = set(slot.exact)
        near: list[str] = []
        far: list[str] = []
        nearest: str | None = None
        scored = sorted((distance(norm, r["word"]), abs(len(r["word"]) - len(norm)), r["word"], r)
                        for r in slot.typos if may_be_near(norm, r["word"], allowed))
        for dist, _, _, r in [t for t in scored if t[0] <= allowed][:NEAREST]:
            nearest = nearest or r["shown"]
            for lexeme in r["lexemes"]:
                if lexeme not in seen:
                    seen.add(lexeme)
                    (near if dist == 1 else far).append(lexeme)
        completes = n == last
        # The words that complete the last one, when they are few, are searched by their
        # lexemes: a prefix lexeme ('chanson':*) makes the index read every posting list
        # under it, three times the work for a common word. When there are more, the
        # prefix lexeme finds them all, and the completions listed add the lexemes it does
        # not reach (a stem shorter than the prefix: "running" is 'run', typed "runni").
        many = len(slot.completions) > COMPLETIONS or not norm.isalpha()  # (words with digits are in no list)
        for r in slot.completions[:COMPLETIONS]:
            for lexeme in r["lexemes"]:
                if lexeme not in seen and not (many and lexeme.startswith(norm)):
                    seen.add(lexeme)
                    near.append(lexeme)
        known = slot.known or (completes and bool(slot.completions))
        word = Word(typed=typed, normal=norm, exact=slot.exact, near=tuple(near), far=tuple(far),
                    prefix=norm if completes and many else None, known=known, nearest=None if known else nearest)
        out.append(word)
        # Stop words ("the", "des") are not in the documents of their language: searched
        # only when there is nothing else to search.
        if not slot.stop and (word.exact or word.expanded):
            meant.append(word)
    if not meant:
        return None
    corrected = None
    if any(w.nearest for w in meant):
        corrected = " ".join(w.nearest or w.typed for w in meant)
    return Expansion(tuple(meant), " & ".join(w.tsquery() for w in meant), corrected)
