"""Sites and their listings: claiming a site, proving its ownership, listing it in
the directory. Verification fetches the site through the SSRF-guarded fetcher; the
worker calls `verify`, tests call it directly."""

from __future__ import annotations

import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg

from merci.errors import Checks, UserError
from merci.fetch import FetchError, FetchPolicy, fetch
from merci.paging import Count, Keyset
from merci.queue import DIRECTORY
from merci.urls import normalize_url

CATEGORIES = ("text", "images", "video", "audio", "software", "people", "rest")
METHODS = ("meta", "link", "well_known")
VERIFY_ACTOR = "directory.verify_site"
DIRECTORY_QUEUE = DIRECTORY
META_NAME = "merci-verification"
WELL_KNOWN_PATH = "/.well-known/merci.txt"
MAX_TAGS = 10
MAX_TAG = 50
MAX_BULK = 500

SITE_COLUMNS = (
    "id, tenant_id, owner_id, url, host, verification_token, verified_at, verification_method,"
    " verification_error, verification_requested_at, verification_checked_at, listed, listed_at,"
    " title, description, language, category, tags, feed_url, created_at"
)


# ------------------------------------------------------------------ sites

def listed() -> Keyset:
    """The directory's sites (listed and verified), newest first."""
    return Keyset(f"select {SITE_COLUMNS} from sites where listed and verified_at is not null", ())


async def count_listed(conn: asyncpg.Connection) -> Count:
    """How many sites the directory lists: the few rows of listing_counts, which move
    with every listing, not a count of the sites."""
    return Count(int(await conn.fetchval("select coalesce(sum(n), 0)::bigint from listing_counts")), True)


def of_owner(*, owner_id: int, everything: bool) -> Keyset:
    """A creator's sites, newest first: all of them (`everything`: for the creator and
    their tenant; RLS keeps other tenants' unlisted sites away) or the listed ones."""
    return Keyset(f"select {SITE_COLUMNS} from sites where owner_id = $1"
                  " and ($2 or (listed and verified_at is not null))", (owner_id, everything))


def columns_for(needed: Collection[str]) -> str:
    """SITE_COLUMNS, only those `needed` (in their order): a page that shows a few fields
    reads and decodes only those."""
    return ", ".join(c for c in (c.strip() for c in SITE_COLUMNS.split(",")) if c in needed)


async def visible_sites(conn: asyncpg.Connection, *, site_ids: list[int], account_id: int | None,
                        tenant_wide: bool, columns: str = SITE_COLUMNS) -> dict[int, dict[str, Any]]:
    """The sites of `site_ids` the caller may see, by id (`columns` must hold `id`): RLS
    hides other tenants' unlisted sites, and within a tenant an unlisted site shows only
    to its owner and (`tenant_wide`) the tenant's admins and keys."""
    rows = await conn.fetch(f"select {columns} from sites where id = any($1::bigint[])"
                            " and ((listed and verified_at is not null) or owner_id = $2 or $3)",
                            site_ids, account_id, tenant_wide)
    return {r["id"]: dict(r) for r in rows}


async def clicks_in_period(conn: asyncpg.Connection, *, site_ids: list[int], period: date) -> dict[int, int]:
    """Clicks in the month on each site's things (the public counters), by site id; a
    site without any is left out."""
    rows = await conn.fetch(
        "select t.site_id, sum(ts.clicks)::bigint as clicks from things t"
        " join thing_stats ts on ts.thing_id = t.id and ts.period = $2"
        " where t.site_id = any($1::bigint[]) group by t.site_id", site_ids, period)
    return {r["site_id"]: int(r["clicks"]) for r in rows}


async def listed_per_category(conn: asyncpg.Connection) -> dict[str, int]:
    """How many sites the directory lists in each category (a category with none is left out)."""
    rows = await conn.fetch("select category, sum(n)::bigint as n from listing_counts group by 1")
    return {r["category"]: int(r["n"]) for r in rows}



def site_url(raw: str, *, field: str = "url") -> tuple[str, str]:
    """(normalized URL, host) of a site: its home page, or a path on a shared host."""
    url = normalize_url(raw, field=field)
    parts = urlsplit(url)
    if parts.query:
        raise UserError("INVALID_URL", "a site's URL has no query string", field)
    return url, (parts.hostname or "").lower()


async def add_site(conn: asyncpg.Connection, *, tenant_id: int, owner_id: int, url: str) -> int:
    """Claim a site; ownership is proven later with the returned token (see `verify`)."""
    url, host = site_url(url)
    existing = await conn.fetchval("select id from sites where owner_id = $1 and url = $2", owner_id, url)
    if existing is not None:
        raise UserError("SITE_EXISTS", "you already added this site", "url")
    try:
        async with conn.transaction():  # savepoint: a lost race is a clear error
            site_id: int = await conn.fetchval(
                "insert into sites (tenant_id, owner_id, url, host, verification_token)"
                " values ($1, $2, $3, $4, $5) returning id",
                tenant_id, owner_id, url, host, "merci-" + secrets.token_urlsafe(18),
            )
    except asyncpg.UniqueViolationError as exc:
        raise UserError("SITE_EXISTS", "you already added this site", "url") from exc
    return site_id


async def editable_site(conn: asyncpg.Connection, *, site_id: int, account_id: int | None,
                        tenant_admin: bool, field: str = "siteId") -> dict[str, Any]:
    """The site, if the caller may change it: its owner, or an admin or key of its tenant.

    RLS has already hidden other tenants' private sites; a listed site of another tenant
    is visible but still not editable (its tenant_id is not ours, so UPDATE sees nothing).
    """
    row = await conn.fetchrow(
        f"select {SITE_COLUMNS} from sites where id = $1 and tenant_id = merci_tenant()", site_id)
    if row is None or not (tenant_admin or row["owner_id"] == account_id):
        raise UserError("NOT_FOUND", "no such site of yours", field)
    return dict(row)


async def request_verification(conn: asyncpg.Connection, *, site_id: int) -> None:
    await conn.execute(
        "update sites set verification_requested_at = now(), verification_error = null, updated_at = now()"
        " where id = $1", site_id)


# ------------------------------------------------------------------ verification


@dataclass(frozen=True)
class Proofs:
    meta_tag: str
    link_tag: str
    well_known_url: str
    well_known_content: str


def submit_url(public_url: str, handle: str, site_url: str | None = None) -> str:
    from urllib.parse import urlencode

    query = {"owner": handle} | ({"url": site_url} if site_url else {})
    return f"{public_url.rstrip('/')}/submit?{urlencode(query)}"


def button_href(public_url: str, url: str) -> str:
    """A Merci button: a plain link that works without JavaScript (a script may upgrade it)."""
    from urllib.parse import quote

    return f"{public_url.rstrip('/')}/submit?url={quote(url, safe='')}"


def proofs(*, token: str, url: str, handle: str, public_url: str) -> Proofs:
    parts = urlsplit(url)
    return Proofs(
        meta_tag=f'<meta name="{META_NAME}" content="{token}">',
        link_tag=f'<link rel="payment" href="{submit_url(public_url, handle)}">',
        well_known_url=f"{parts.scheme}://{parts.netloc}{WELL_KNOWN_PATH}",
        well_known_content=token,
    )


class _HeadParser(HTMLParser):
    """Collects <meta name=… content=…> and <link rel=… href=…> anywhere in a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.metas: list[tuple[str, str]] = []
        self.links: list[tuple[list[str], str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "meta" and "name" in a:
            self.metas.append((a["name"].strip().lower(), a.get("content", "").strip()))
        elif tag == "link" and "rel" in a:
            self.links.append((a["rel"].lower().split(), a.get("href", "").strip()))

    handle_startendtag = handle_starttag


def _page_proof(body: bytes, *, token: str, handle: str, public_url: str) -> str | None:
    parser = _HeadParser()
    parser.feed(body.decode("utf-8", errors="replace"))
    parser.close()
    if any(name == META_NAME and secrets.compare_digest(content, token) for name, content in parser.metas):
        return "meta"
    ours = urlsplit(public_url)
    for rels, href in parser.links:
        target = urlsplit(href)
        if ("payment" in rels and (target.scheme, target.netloc) == (ours.scheme, ours.netloc)
                and target.path.rstrip("/").endswith("/submit")
                and parse_qs(target.query).get("owner") == [handle]):
            return "link"
    return None


@dataclass(frozen=True)
class Outcome:
    method: str | None  # how ownership was proven; None: not proven
    error: str | None  # why not, for the owner to read

    @property
    def verified(self) -> bool:
        return self.method is not None


async def check(*, url: str, token: str, handle: str, public_url: str, policy: FetchPolicy) -> Outcome:
    """Fetch the site and look for any of the three proofs."""
    problems: list[str] = []
    try:
        page = await fetch(url, policy=policy)
    except FetchError as err:
        problems.append(f"home page: {err.code}: {err.message}")
    else:
        method = _page_proof(page.body, token=token, handle=handle, public_url=public_url)
        if method is not None:
            return Outcome(method, None)
        problems.append(f'home page: no <meta name="{META_NAME}"> with your token and no rel="payment"'
                        f" link to your Merci page")
    parts = urlsplit(url)
    try:
        known = await fetch(f"{parts.scheme}://{parts.netloc}{WELL_KNOWN_PATH}", policy=policy)
    except FetchError as err:
        problems.append(f"{WELL_KNOWN_PATH}: {err.code}: {err.message}")
    else:
        lines = {line.strip() for line in known.body.decode("utf-8", errors="replace").splitlines()}
        if any(secrets.compare_digest(line, token) for line in lines if line):
            return Outcome("well_known", None)
        problems.append(f"{WELL_KNOWN_PATH}: the file does not contain your token")
    return Outcome(None, "; ".join(problems)[:2000])


async def verify(conn: asyncpg.Connection, *, site_id: int, public_url: str, policy: FetchPolicy,
                 now: datetime | None = None) -> Outcome | None:
    """Check a site (as merci_system) and record the result; None when the site is gone."""
    row = await conn.fetchrow(
        "select s.url, s.verification_token, s.verified_at, a.handle from sites s"
        " join accounts a on a.id = s.owner_id where s.id = $1", site_id)
    if row is None:
        return None
    outcome = await check(url=row["url"], token=row["verification_token"], handle=row["handle"],
                          public_url=public_url, policy=policy)
    await record(conn, site_id=site_id, outcome=outcome, now=now)
    return outcome


async def record(conn: asyncpg.Connection, *, site_id: int, outcome: Outcome, now: datetime | None = None) -> None:
    """Record a check's outcome (as merci_system). A proof gives the site its verified scope,
    and the database then gives it what that scope covers (migration 0015)."""
    if outcome.verified:
        await conn.execute(
            "update sites set verified_at = coalesce(verified_at, coalesce($2, now())), verification_method = $3,"
            " verification_error = null, verification_checked_at = coalesce($2, now()), updated_at = now()"
            " where id = $1", site_id, now, outcome.method)
    else:
        # A site verified before stays verified (a redesign that drops the tag must not
        # unlist it at once); the owner sees why the last check failed.
        await conn.execute(
            "update sites set verification_error = $3, verification_checked_at = coalesce($2, now()),"
            " updated_at = now() where id = $1", site_id, now, outcome.error)


# ------------------------------------------------------------------ listings


@dataclass(frozen=True)
class Listing:
    title: str
    description: str
    language: str
    category: str
    tags: list[str]
    feed_url: str | None


def clean_listing(*, title: str, description: str, language: str, category: str,
                  tags: Sequence[str] = (), feed_url: str | None = None, prefix: str = "") -> Listing:
    """Check a listing; every refusal names its field (`prefix` locates it in a bulk input),
    and all of them are reported at once (UserErrors)."""
    checks = Checks()
    title = " ".join(title.split())
    if not 1 <= len(title) <= 200:
        checks.refuse(UserError("INVALID_TITLE", "a title has 1 to 200 characters", prefix + "title"))
    description = description.strip()
    if not 5 <= len(description) <= 1000:
        checks.refuse(UserError("INVALID_DESCRIPTION", "a description has 5 to 1000 characters",
                                prefix + "description"))
    language = language.strip().lower()
    if len(language) != 2 or not (language.isascii() and language.isalpha()):
        checks.refuse(UserError("INVALID_LANGUAGE", "language is a two-letter ISO 639-1 code such as en or fr",
                                prefix + "language"))
    category = category.strip().lower()
    if category not in CATEGORIES:
        checks.refuse(UserError("INVALID_CATEGORY", f"category is one of {', '.join(CATEGORIES)}",
                                prefix + "category"))
    clean_tags: list[str] = []
    for tag in tags:
        t = " ".join(tag.split()).lower()
        if t and t not in clean_tags:
            clean_tags.append(t)
    if len(clean_tags) > MAX_TAGS:
        checks.refuse(UserError("TOO_MANY_TAGS", f"a listing has at most {MAX_TAGS} tags", prefix + "tags"))
    if any(len(t) > MAX_TAG for t in clean_tags):
        checks.refuse(UserError("INVALID_TAG", f"a tag has at most {MAX_TAG} characters", prefix + "tags"))
    feed = None if feed_url is None or not feed_url.strip() else checks(normalize_url, feed_url,
                                                                         field=prefix + "feedUrl")
    checks.done()
    return Listing(title, description, language, category, clean_tags, feed)


async def save_listing(conn: asyncpg.Connection, *, site: dict[str, Any], listing: Listing,
                       field: str = "siteId") -> None:
    """List a verified site, or edit its listing. The trigger on sites re-indexes it."""
    if site["verified_at"] is None:
        raise UserError("NOT_VERIFIED", "verify the site before listing it", field)
    await conn.execute(
        "update sites set title = $2, description = $3, language = $4, category = $5, tags = $6, feed_url = $7,"
        " listed = true, listed_at = coalesce(listed_at, now()), updated_at = now() where id = $1",
        site["id"], listing.title, listing.description, listing.language, listing.category, listing.tags,
        listing.feed_url)


async def unlist(conn: asyncpg.Connection, *, site_id: int) -> None:
    await conn.execute("update sites set listed = false, listed_at = null, updated_at = now() where id = $1", site_id)
