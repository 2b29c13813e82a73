"""Directory search benchmark: 24 kinds of search over generated listings, each timed
through GraphQL and as the same SQL run raw (the domain functions the resolvers call,
on one asyncpg connection as merci_app), in one run. The raw figure is the limit the
API can approach; the ratio is its cost. GraphQL is timed twice:
  - over HTTP, against a `merci serve directory` process (what a client waits for);
  - in this process, through the directory app's ASGI interface (its middleware,
    authentication, planner and resolvers, no socket): what the GraphQL layer itself
    costs, apart from the HTTP transport that `GET /healthz` measures alone.

    python -m bench.search_bench --rows 20000        # quick
    python -m bench.search_bench                     # 1M listings (a few minutes)
    python -m bench.search_bench --keep NAME         # ... and keep the database NAME afterwards
    python -m bench.search_bench --reuse NAME        # measure again on it (migrated, not regenerated)
    python -m bench.search_bench --lock /tmp/merci-bench.lock   # measure while holding the shared bench lock

DATABASE_URL (a superuser) is used when set, else an embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import hashlib
import io
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import psycopg
import pycurl

from bench.common import fresh_database, server
from bench.search_data import generate
from directory.queries import site_columns
from merci import config, highlights, search
from merci.config import with_database
from merci.db import Scope, create_pool, migrate, set_scope
from runtime import faces
from runtime.progress import Progress

HIGHLIGHTS = "highlights"
NODE = "edges { cursor node { id title url host category language tags listedAt } } pageInfo { hasNextPage endCursor }"
COUNTS = "totalCount facets { categories { value count } languages { value count } }"


def made_up(g: int) -> str:
    """The generator's made-up word of rank ~g (the same expression as in SQL)."""
    return hashlib.md5(f"w{g}".encode()).hexdigest()[: 3 + g % 6] + chr(97 + g % 26)


def kinds(tenant: str) -> list[tuple[str, dict[str, Any], bool, bool]]:
    """(name, searchSites arguments, with counts?, second page?); HIGHLIGHTS in the arguments
    selects highlights too."""
    return [
        ("browse popular", {}, False, False),
        ("browse newest", {"sort": "NEWEST"}, False, False),
        ("browse trending", {"sort": "TRENDING"}, False, False),
        ("browse audio, popular", {"category": "audio"}, False, False),
        ("browse fr, newest", {"language": "fr", "sort": "NEWEST"}, False, False),
        ("browse one tenant, newest", {"tenant": tenant, "sort": "NEWEST"}, False, False),
        ("browse + facets", {"category": "video"}, True, False),
        ("browse page 2", {"sort": "POPULAR"}, False, True),
        ("rare word", {"query": made_up(20000)}, False, False),
        ("rare word + facets", {"query": made_up(12000)}, True, False),
        ("uncommon word", {"query": made_up(3000)}, False, False),
        ("medium word", {"query": "chanson"}, False, False),
        ("medium word page 2", {"query": "chanson"}, False, True),
        ("two words", {"query": "forest chanson"}, False, False),
        ("accents (cafe)", {"query": "cafe"}, False, False),
        ("french stem (chansons)", {"query": "chansons"}, False, False),
        ("typo (chnason)", {"query": "chnason"}, False, False),
        ("two typos (phtoogrpahy)", {"query": "phtoogrpahy"}, False, False),
        ("typo, nothing near (gatuex)", {"query": "gatuex"}, False, False),
        ("prefix (musi)", {"query": "voyage musi"}, False, False),
        ("highlights (chanson)", {"query": "chanson", HIGHLIGHTS: True}, False, False),
        ("word + filters", {"query": "musique", "category": "audio", "language": "fr"}, False, False),
        ("common word, popular", {"query": "podcast", "sort": "POPULAR"}, False, False),
        ("common word, relevance", {"query": "podcast"}, False, False),
    ]


def graphql_query(args: dict[str, Any], counts: bool, after: str | None) -> dict[str, Any]:
    marks = "highlights { site title { start length } description { start length } }" if args.get(HIGHLIGHTS) else ""
    args = {k: v for k, v in args.items() if k != HIGHLIGHTS}
    variables = {**args, "first": 20, "after": after}
    decl = "($query: String, $category: String, $language: String, $tenant: String, $sort: SiteSort, " \
           "$first: Int, $after: String)"
    call = ", ".join(f"{k}: ${k}" for k in ("query", "category", "language", "tenant", "sort", "first", "after"))
    return {"query": f"query{decl} {{ searchSites({call}) {{ {NODE} {COUNTS if counts else ''} {marks} }} }}",
            "variables": variables}


# The Site columns NODE shows: the page's SQL reads those, raw as through GraphQL (and
# with highlights, what they read).
COLUMNS = site_columns(frozenset(re.findall(r"\w+", NODE)))
HIGHLIGHTED_COLUMNS = site_columns(frozenset([*re.findall(r"\w+", NODE), HIGHLIGHTS]))


async def raw(conn: asyncpg.Connection, args: dict[str, Any], counts: bool, after: str | None,
              tenants: dict[str, int]) -> search.SearchPage:
    """What the resolvers run, minus GraphQL and HTTP: one transaction like theirs, the
    same statements (the same columns)."""
    async with conn.transaction():
        await set_scope(conn, Scope(tenants["merci"]))
        q = search.clean_query(text=args.get("query"), category=args.get("category"), language=args.get("language"),
                               sort=args.get("sort", "RELEVANCE"),
                               tenant_id=tenants.get(args["tenant"]) if "tenant" in args else None)
        marks = bool(args.get(HIGHLIGHTS))
        page = await search.search(conn, q, first=20, after=after, columns=HIGHLIGHTED_COLUMNS if marks else COLUMNS)
        if counts:
            await search.facets(conn, q, page.match)
        if marks:
            await highlights.of_rows(conn, page.rows, page.match)
    return page


GENERATE_STEPS = 24  # statements search_data.generate runs


class _Steps:
    """A connection that moves a progress bar (a bar on a terminal, log lines otherwise) per statement."""

    def __init__(self, conn: asyncpg.Connection, bar: Progress) -> None:
        self.conn, self.bar, self.done = conn, bar, 0

    async def execute(self, *args: Any, **kw: Any) -> str:
        result: str = await self.conn.execute(*args, **kw)
        self.done += 1
        self.bar.update(min(self.done, self.bar.total))
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


class InProcess:
    """The directory app (as `merci serve directory` builds it), called through ASGI."""

    def __init__(self, settings: config.Settings) -> None:
        self.app = faces.app(settings, "directory")

    async def __aenter__(self) -> InProcess:
        self.lifespan = self.app.router.lifespan_context(self.app)
        await self.lifespan.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.lifespan.__aexit__(None, None, None)

    async def post(self, path: str, body: bytes) -> bytes:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                             (b"content-length", str(len(body)).encode())],
                 "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000), "state": {}}
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return b"".join(chunks)


class Http:
    """An HTTP client that keeps one connection: libcurl (pycurl), so that the client's own
    work (about 60 µs a request here; aiohttp's was 175, httpx's more) blurs the latencies
    it measures as little as asyncpg does the raw side's. It blocks the event loop while a
    request is under way, which is what it measures."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.curl = pycurl.Curl()
        self.curl.setopt(pycurl.TCP_NODELAY, 1)
        self.curl.setopt(pycurl.TIMEOUT, 30)

    def get(self, path: str) -> tuple[int, bytes]:
        self.curl.setopt(pycurl.HTTPGET, 1)
        self.curl.setopt(pycurl.HTTPHEADER, [])
        return self._perform(path)

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.curl.setopt(pycurl.POSTFIELDS, body)
        self.curl.setopt(pycurl.HTTPHEADER, ["content-type: application/json", "Expect:"])  # no 100-continue
        return self._perform(path)

    def _perform(self, path: str) -> tuple[int, bytes]:
        out = io.BytesIO()
        self.curl.setopt(pycurl.URL, self.base + path)
        self.curl.setopt(pycurl.WRITEDATA, out)
        self.curl.perform()
        return self.curl.getinfo(pycurl.RESPONSE_CODE), out.getvalue()

    def close(self) -> None:
        self.curl.close()


def http_floor(http: Http, runs: int) -> tuple[float, float]:
    """p50, p95 of a request that does nothing: what HTTP itself (client and server) costs."""
    samples = []
    for i in range(runs + 3):
        t = time.perf_counter()
        status, _ = http.get("/healthz")
        if status != 200:
            raise RuntimeError(f"/healthz answered {status}")
        if i >= 3:
            samples.append(time.perf_counter() - t)
    return pct(samples, .5), pct(samples, .95)


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p * (len(ordered) - 1))))] * 1000


@contextmanager
def held(path: str | None) -> Iterator[None]:
    """An exclusive flock(2) on `path` (as `flock PATH …` takes it), or nothing without one."""
    if path is None:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


async def measure(dsn: str, rows: int, runs: int, *, reuse: bool = False, lock: str | None = None) -> int:
    # Hundreds of queries a second from one address spend its query-cost budget and its
    # request limits as fast: a bucket it never empties and limits it never reaches (both
    # still counted), as in bench.gateway_bench.
    settings = config.Settings(database_url=dsn, query_cost_bucket=100_000_000, query_cost_restore_rate=1_000_000.0,
                               rate_limit_multiplier=1_000_000.0).derived()
    owner = await asyncpg.connect(dsn)
    if reuse:
        rows = await owner.fetchval("select count(*) from site_search")
        print(f"reusing {rows:,} listings")
    else:
        started = time.perf_counter()
        await generate(_Steps(owner, Progress("generating listings", GENERATE_STEPS)), rows)  # type: ignore[arg-type]
        print(f"generated {rows:,} listings in {time.perf_counter() - started:.1f}s")
    tenants = {r["slug"]: r["id"] for r in await owner.fetch("select slug, id from tenants")}
    await owner.close()
    if runs <= 0:
        return 0  # --keep NAME --runs 0: generate only, measure later (under the bench lock) with --reuse
    with held(lock):  # other benchmarks wait while this one measures (not while it generates)
        return await timed(settings, dsn, rows, runs, tenants)


async def timed(settings: config.Settings, dsn: str, rows: int, runs: int, tenants: dict[str, int]) -> int:
    port = 18000 + os.getpid() % 1000
    env = {**os.environ, "DATABASE_URL": dsn, "MERCI_ENV": "test", "PYTHONUNBUFFERED": "1",
           "MERCI_QUERY_COST_BUCKET": "100000000", "MERCI_QUERY_COST_RESTORE_RATE": "1000000",
           "MERCI_RATE_LIMIT_MULTIPLIER": "1000000"}
    env.pop("BROKER_URL", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runtime.cli", "serve", "directory", "--port", str(port), "--quiet", env=env)
    http = Http(f"http://127.0.0.1:{port}")
    pool = await create_pool(settings.app_database_url, max_size=1)
    try:
        async with InProcess(settings) as local:
            for _ in range(100):
                try:
                    if http.get("/healthz")[0] == 200:
                        break
                except pycurl.error:
                    await asyncio.sleep(0.2)
            floor = http_floor(http, runs)
            results = []
            async with pool.acquire() as conn:
                for name, args, counts, second in kinds("bench-1"):
                    after = None
                    if second:
                        after = (await raw(conn, args, False, None, tenants)).cursors[-1]
                    graph: list[float] = []
                    asgi: list[float] = []
                    sql: list[float] = []
                    request = json.dumps(graphql_query(args, counts, after)).encode()
                    for i in range(runs + 3):  # the first few warm caches and plans
                        t = time.perf_counter()
                        page = await raw(conn, args, counts, after, tenants)
                        d_sql = time.perf_counter() - t
                        t = time.perf_counter()
                        _, answer = http.post("/graphql", request)
                        d_graph = time.perf_counter() - t
                        t = time.perf_counter()
                        local_answer = await local.post("/graphql", request)
                        d_asgi = time.perf_counter() - t
                        body = json.loads(answer)
                        if "errors" in body:
                            raise RuntimeError(f"{name}: {body['errors']}")
                        # The same data (extensions.cost tells each process's own bucket).
                        assert json.loads(local_answer)["data"] == body["data"], (name, local_answer[:300])
                        if i >= 3:
                            sql.append(d_sql)
                            graph.append(d_graph)
                            asgi.append(d_asgi)
                    got = len(body["data"]["searchSites"]["edges"])
                    assert got == len(page.rows), (name, got, len(page.rows))
                    results.append((name, got, pct(graph, .5), pct(graph, .95), pct(asgi, .5), pct(asgi, .95),
                                    pct(sql, .5), pct(sql, .95)))
    finally:
        http.close()
        await pool.close()
        proc.terminate()
        await proc.wait()

    print(f"\n== directory search, {rows:,} listings, {runs} runs per kind (ms) ==")
    print(f"{'':33} {'GraphQL over HTTP':>17}  {'GraphQL in-process':>18}  {'raw SQL':>15}  {'p95 ratio to SQL':>17}")
    print(f"{'kind':28} {'hits':>4} {'p50':>8} {'p95':>8} {'p50':>9} {'p95':>8} {'p50':>7} {'p95':>7} "
          f"{'HTTP':>8} {'in-proc':>8}")
    for name, got, g50, g95, a50, a95, s50, s95 in results:
        flag = "" if g95 <= 25 and g95 <= 2 * s95 else "  *"
        print(f"{name:28} {got:>4} {g50:8.1f} {g95:8.1f} {a50:9.1f} {a95:8.1f} {s50:7.1f} {s95:7.1f} "
              f"{g95 / s95:8.2f} {a95 / s95:8.2f}{flag}")
    over_http = [r[3] for r in results]
    http_ratios = [r[3] / r[7] for r in results]
    local_ratios = [r[5] / r[7] for r in results]
    print(f"\nGraphQL over HTTP: p95 ≤ 25 ms in {sum(v <= 25 for v in over_http)}/{len(results)} kinds "
          f"(median of p95s {statistics.median(over_http):.1f} ms); p95 ≤ 2x the raw SQL in "
          f"{sum(r <= 2 for r in http_ratios)}/{len(results)} (ratio median {statistics.median(http_ratios):.2f}, "
          f"worst {max(http_ratios):.2f})")
    print(f"GraphQL in-process: p95 ≤ 2x the raw SQL in {sum(r <= 2 for r in local_ratios)}/{len(results)} kinds "
          f"(ratio median {statistics.median(local_ratios):.2f}, worst {max(local_ratios):.2f})")
    print("(* misses a goal: p95 over HTTP above 25 ms, or above 2x the raw SQL's)")
    print(f"HTTP alone, GET /healthz on the same server and client: p50 {floor[0]:.1f} ms, p95 {floor[1]:.1f} ms")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=300, help="timed runs per kind and path (p95: 15th worst of 300)")
    parser.add_argument("--keep", metavar="NAME", help="generate into database NAME and keep it (development)")
    parser.add_argument("--reuse", metavar="NAME", help="measure on database NAME kept earlier (migrated first)")
    parser.add_argument("--lock", metavar="PATH", help="hold an exclusive flock on PATH while measuring, "
                                                       "e.g. /tmp/merci-bench.lock (generating goes unlocked)")
    args = parser.parse_args()
    with server() as url:
        if args.reuse:
            dsn = with_database(url, args.reuse)
            asyncio.run(migrate(dsn))
            return asyncio.run(measure(dsn, args.rows, args.runs, reuse=True, lock=args.lock))
        if args.keep:
            dsn = kept_database(url, args.keep)
            return asyncio.run(measure(dsn, args.rows, args.runs, lock=args.lock))
        with fresh_database(url, prefix="merci_search_bench") as dsn:
            return asyncio.run(measure(dsn, args.rows, args.runs, lock=args.lock))


def kept_database(server_url: str, name: str) -> str:
    """A new database NAME (an old one of that name is dropped), migrated, left in place afterwards."""
    if not name.isidentifier():
        raise SystemExit(f"--keep: {name!r} is not a plain database name")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
        conn.execute(f'create database "{name}"')
    dsn = with_database(server_url, name)
    asyncio.run(migrate(dsn))
    return dsn


if __name__ == "__main__":
    sys.exit(main())
