"""Relevance of typo-tolerant directory search (issue 20): recall@10 and latency per kind
of query, over a generated corpus of English and French listings.

Each query is made from one listing's own words: its two rarest words (a listing is
what someone remembers it by), the second changed as the kind says and put last:

- exact: as written (accents and all); also reported, how often the first result holds
  the typed words themselves (exact matches rank above typo'd ones);
- one typo, of each kind (insertion, deletion, substitution, transposition), in a word
  of 5 letters or more; two typos in a word of 9 or more (Damerau-Levenshtein distance
  checked);
- accent dropped ("gâteau" typed "gateau");
- prefix: the word's first 60% (at least 3 letters, as while typing).

recall@10 is the share of queries whose listing comes in the first 10 results (goal
≥ 0.98 each); latency is the search as the API runs it (merci.search.search in one
transaction as merci_app, no GraphQL or HTTP), p50 and p95 per kind.

    python -m bench.relevance_bench                   # 100k listings, 400 queries per kind
    python -m bench.relevance_bench --listings 20000 --queries 100   # quick
    python -m bench.relevance_bench --keep NAME       # ... and keep the database NAME afterwards
    python -m bench.relevance_bench --reuse NAME      # measure again on it (the same --listings)

DATABASE_URL (a superuser) is used when set, else an embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass

import asyncpg

from bench.common import fresh_database, server
from bench.search_bench import kept_database
from bench.search_data import EN, FR, index
from merci import config, search, spelling
from merci.config import with_database
from merci.db import Scope, create_pool, migrate, set_scope

HOSTS = "%.relevance.example"
LETTERS = "abcdefghijklmnopqrstuvwxyz"

# Syllables that make words which read as English or French (and are no real words'
# more often than chance), so that the corpus has a long tail of rare words, many of
# them long, the French ones with accents.
EN_SYLLABLES = ([o + v + c for o in ("b", "c", "d", "f", "g", "h", "l", "m", "n", "p", "r", "s", "t", "v", "w", "br",
                                     "cr", "dr", "fl", "gr", "pl", "pr", "st", "tr", "sh", "ch", "th", "sp", "")
                 for v in ("a", "e", "i", "o", "u", "ea", "ou", "ai", "oo") for c in ("", "n", "r", "s", "t", "l", "ck",
                                                                                      "ng", "st")])
FR_SYLLABLES = ([o + v + c for o in ("b", "c", "d", "f", "g", "j", "l", "m", "n", "p", "r", "s", "t", "v", "ch", "gr",
                                     "pl", "tr", "qu", "br", "")
                 for v in ("a", "e", "i", "o", "u", "a", "e", "ou", "é", "è", "ê", "â", "eau", "ai", "oi", "ô")
                 for c in ("", "n", "r", "s", "t", "l", "x", "nt", "c")])


def normal(word: str) -> str:
    """Unaccented, lowercased, as the search compares words (for these letters, what
    PostgreSQL's unaccent does)."""
    return "".join(c for c in unicodedata.normalize("NFKD", word.lower()) if not unicodedata.combining(c))


def vocabulary(rng: random.Random, syllables: list[str], real: list[str], size: int) -> list[str]:
    words: dict[str, str] = {normal(w): w for w in real}
    while len(words) < size:
        word = "".join(rng.choice(syllables) for _ in range(rng.choice((1, 2, 2, 3, 3, 4))))
        if 3 <= len(word) <= 16 and normal(word).isalpha():
            words.setdefault(normal(word), word)
    out = list(words.values())
    rng.shuffle(out)
    return out


@dataclass
class Listing:
    title: str
    description: str
    language: str
    tags: list[str]

    @property
    def words(self) -> list[str]:
        return [*self.title.split(), *self.tags, *self.description.split()]


def corpus(n: int, seed: int = 20) -> list[Listing]:
    rng = random.Random(seed)
    vocab = {"en": vocabulary(rng, EN_SYLLABLES, [w for w in EN if w.isalpha()], 30_000),
             "fr": vocabulary(rng, FR_SYLLABLES, [w for w in FR if w.isalpha()], 30_000)}

    def draw(language: str) -> str:
        words = vocab[language]
        return words[min(len(words) - 1, int(math.exp(rng.random() * math.log(len(words)))) - 1)]  # Zipf-like

    out = []
    for i in range(n):
        language = "en" if i % 2 else "fr"
        title = " ".join(draw(language) for _ in range(rng.randint(3, 5)))
        out.append(Listing(title[:1].upper() + title[1:], " ".join(draw(language) for _ in range(rng.randint(12, 20)))
                           + ".", language, [draw(language) for _ in range(2)]))
    return out


async def load(conn: asyncpg.Connection, listings: list[Listing]) -> tuple[int, list[int]]:
    """The listings as sites of a tenant of their own, indexed; (tenant id, site ids in order)."""
    tenant = await conn.fetchval("insert into tenants (slug, name) values ('relevance', 'Relevance') returning id")
    owner = await conn.fetchval("insert into accounts (tenant_id, handle, display_name)"
                                " values ($1, 'relevance_owner', 'Relevance') returning id", tenant)
    await conn.execute("set session_replication_role = replica")  # bulk load: bench.search_data.index does the rest
    records = [(tenant, owner, f"https://l{i}.relevance.example/", f"l{i}.relevance.example", f"tok{i}", "meta",
                False, x.title, x.description, x.language, "text", x.tags)
               for i, x in enumerate(listings)]
    await conn.copy_records_to_table(
        "sites", records=records,
        columns=["tenant_id", "owner_id", "url", "host", "verification_token", "verification_method", "listed",
                 "title", "description", "language", "category", "tags"])
    await conn.execute("update sites set verified_at = now(), verified_scope = merci_site_scope(url, 'meta'),"
                       " listed = true,"
                       " listed_at = now() - (id % 1000) * interval '1 hour' where host like $1", HOSTS)
    await conn.execute("set session_replication_role = default")
    await index(conn, HOSTS)
    ids = await conn.fetch("select id from sites where host like $1 order by id", HOSTS)
    return tenant, [r["id"] for r in ids]


# ------------------------------------------------------------------ queries


def typo(rng: random.Random, word: str, kind: str) -> str:
    i = rng.randrange(len(word))
    if kind == "insertion":
        return word[:i] + rng.choice(LETTERS) + word[i:]
    if kind == "deletion":
        return word[:i] + word[i + 1:]
    if kind == "substitution":
        return word[:i] + rng.choice(LETTERS.replace(word[i], "")) + word[i + 1:]
    i = rng.randrange(len(word) - 1)  # transposition
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


EDITS = ("insertion", "deletion", "substitution", "transposition")


def changed(rng: random.Random, kind: str, word: str) -> str | None:
    """`word` (as written) changed as `kind` says, or None when it does not qualify."""
    plain = normal(word)
    if kind == "exact":
        return word
    if kind == "accent dropped":
        return plain if plain != word.lower() else None
    if kind == "prefix":
        return plain[:max(spelling.MIN_PREFIX, math.ceil(0.6 * len(plain)))] if len(plain) >= 5 else None
    if kind == "two typos":
        if len(plain) < spelling.TWO_TYPOS:
            return None
        for _ in range(20):
            out = typo(rng, typo(rng, plain, rng.choice(EDITS)), rng.choice(EDITS))
            if spelling.distance(out, plain) == 2:
                return out
        return None
    edit = kind.removeprefix("one typo, ")
    if len(plain) < spelling.ONE_TYPO or (edit == "transposition" and len(set(plain)) < 2):
        return None
    for _ in range(20):
        out = typo(rng, plain, edit)
        if spelling.distance(out, plain) == 1:
            return out
    return None


KINDS = ["exact", *(f"one typo, {e}" for e in EDITS), "two typos", "accent dropped", "prefix"]


@dataclass
class Query:
    target: int  # the listing's index
    text: str
    typed: tuple[str, ...]  # the words as typed, normalized


def queries(listings: list[Listing], kind: str, n: int, seed: int) -> list[Query]:
    rng = random.Random(seed)
    frequency: Counter[str] = Counter()
    for x in listings:
        frequency.update({normal(w.strip(".")) for w in x.words})
    out: list[Query] = []
    order = list(range(len(listings)))
    rng.shuffle(order)
    for i in order:
        words = {normal(w.strip(".")): w.strip(".") for w in listings[i].words}
        ranked = sorted(words, key=lambda w: (frequency[w], w))
        for pick in ranked:
            text = changed(rng, kind, words[pick])
            if text is None:
                continue
            other = next((w for w in ranked if w != pick), None)
            if other is None:
                break
            out.append(Query(i, f"{words[other]} {text}", (other, pick)))
            break
        if len(out) == n:
            break
    return out


# ------------------------------------------------------------------ measuring


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p * (len(ordered) - 1))))] * 1000


async def measure(dsn: str, n_listings: int, n_queries: int, *, reuse: bool = False) -> int:
    settings = config.Settings(database_url=dsn).derived()
    started = time.perf_counter()
    listings = corpus(n_listings)  # the same every time (seeded): a kept database holds these
    owner = await asyncpg.connect(dsn)
    try:
        if reuse:
            tenant = await owner.fetchval("select id from tenants where slug = 'relevance'")
            ids = [r["id"] for r in await owner.fetch("select id from sites where host like $1 order by id", HOSTS)]
            if len(ids) != n_listings:
                raise SystemExit(f"--reuse: the database holds {len(ids):,} listings, not {n_listings:,}")
        else:
            tenant, ids = await load(owner, listings)
        words = await owner.fetchval("select count(*) from search_words")
        variants = await owner.fetchval("select count(*) from search_word_variants")
    finally:
        await owner.close()
    print(f"{n_listings:,} listings (en and fr), {words:,} distinct words, {variants:,} variants,"
          f" generated and indexed in {time.perf_counter() - started:.0f}s")
    sets = [{normal(w.strip(".")) for w in x.words} for x in listings]
    pool = await create_pool(settings.app_database_url, max_size=1)
    results: list[tuple[str, int, float, float, float, float | None]] = []
    try:
        async with pool.acquire() as conn:
            for k, kind in enumerate(KINDS):
                asked = queries(listings, kind, n_queries, seed=k)
                found = 0
                first_exact = 0
                times: list[float] = []
                for i, query in enumerate(asked):
                    q = search.clean_query(text=query.text, category=None, language=None, sort="RELEVANCE",
                                           tenant_id=tenant)
                    t = time.perf_counter()
                    async with conn.transaction():
                        await set_scope(conn, Scope(tenant))
                        page = await search.search(conn, q, first=10, after=None)
                    elapsed = time.perf_counter() - t
                    if i >= 3 or len(asked) <= 3:  # the first few warm caches and plans
                        times.append(elapsed)
                    got = [r["id"] for r in page.rows]
                    found += ids[query.target] in got
                    if got:
                        top = ids.index(got[0])
                        first_exact += set(query.typed) <= sets[top]
                results.append((kind, len(asked), found / max(len(asked), 1), pct(times, .5), pct(times, .95),
                                first_exact / max(len(asked), 1) if kind == "exact" else None))
    finally:
        await pool.close()
    print(f"\n== relevance, {n_listings:,} listings, queries of two of a listing's own words (ms) ==")
    print(f"{'kind':30} {'queries':>7} {'recall@10':>9} {'p50':>6} {'p95':>6}")
    for kind, asked_n, recall, p50, p95, exact_first in results:
        flag = "" if recall >= 0.98 else "  *"
        extra = f"   first result holds the typed words: {exact_first:.3f}" if exact_first is not None else ""
        print(f"{kind:30} {asked_n:>7} {recall:9.3f} {p50:6.1f} {p95:6.1f}{flag}{extra}")
    print("(* misses the goal: recall@10 below 0.98)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listings", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=400, help="queries per kind")
    parser.add_argument("--keep", metavar="NAME", help="generate into database NAME and keep it (development)")
    parser.add_argument("--reuse", metavar="NAME", help="measure on database NAME kept earlier (migrated first)")
    args = parser.parse_args()
    with server() as url:
        if args.reuse:
            dsn = with_database(url, args.reuse)
            asyncio.run(migrate(dsn))
            return asyncio.run(measure(dsn, args.listings, args.queries, reuse=True))
        if args.keep:
            return asyncio.run(measure(kept_database(url, args.keep), args.listings, args.queries))
        with fresh_database(url, prefix="merci_relevance_bench") as dsn:
            return asyncio.run(measure(dsn, args.listings, args.queries))


if __name__ == "__main__":
    sys.exit(main())
