"""Auto-submit: a button or link naming a URL nobody registered yet, with Flattr's
parameters (`owner`/`user_id`, `url`, `title`, `description`, `language`, `tags`,
`category`, `hidden`), and the discovery of the owner of such an unclaimed thing.

The owner a link names is only a hint: anyone can write a link. A thing goes to a
creator when they verified a site covering its canonical URL (at once, by the
database), or when the page itself says so with `<link rel="payment"
href="https://MERCI/submit?owner=HANDLE">` (read through the SSRF guard), which
proves that page as a verification link proves a site. Until then its shares wait
in escrow.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import asyncpg

from merci.accounts import HANDLE_RE
from merci.errors import UserError
from merci.fetch import FetchError, FetchPolicy, fetch
from merci.ids import from_global
from merci.queue import DIRECTORY
from merci.things import CATEGORIES
from merci.urls import canonical_key, host_of, normalize_url

DISCOVER_ACTOR = "things.discover"
DISCOVER_QUEUE = DIRECTORY
TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"", "0", "false", "no", "off"})
# Flattr's languages were `en_GB`; ours are ISO 639-1 (`en`).
LANGUAGE_RE = re.compile(r"^([a-zA-Z]{2})(?:[_-][a-zA-Z0-9]{2,8})?$")


@dataclass
class Submission:
    url: str | None = None
    thing_id: int | None = None
    owner: str | None = None  # a handle
    title: str = ""
    description: str = ""
    category: str = "rest"
    language: str | None = None
    tags: list[str] = field(default_factory=list)
    hidden: bool = False

    def query(self) -> dict[str, str]:
        """The same submission as link parameters (for buttons and redirects)."""
        q: dict[str, str] = {}
        if self.url:
            q["url"] = self.url
        if self.thing_id:
            q["thing"] = str(self.thing_id)
        if self.owner:
            q["owner"] = self.owner
        for key in ("title", "description"):
            if getattr(self, key):
                q[key] = getattr(self, key)
        if self.category != "rest":
            q["category"] = self.category
        if self.language:
            q["language"] = self.language
        if self.tags:
            q["tags"] = ",".join(self.tags)
        if self.hidden:
            q["hidden"] = "1"
        return q


def parse(params: dict[str, str], *, require_url: bool = False) -> tuple[Submission, list[UserError]]:
    """Every problem at once, each naming its parameter, so a malformed link is fixed in one go."""
    sub = Submission()
    errors: list[UserError] = []

    def bad(code: str, message: str, param: str) -> None:
        errors.append(UserError(code, message, param))

    raw_thing = params.get("thing", "").strip()
    if raw_thing:
        if raw_thing.isdigit() and 0 < int(raw_thing) < 2**63:
            sub.thing_id = int(raw_thing)
        else:
            try:  # the API's global id works too
                sub.thing_id = from_global(raw_thing, expect="Thing")[1]
            except UserError:
                bad("INVALID_THING", "`thing` is a thing's id", "thing")
    raw_url = params.get("url", "")
    if raw_url.strip():
        try:
            sub.url = normalize_url(raw_url)
        except UserError as err:
            bad(err.code, f"`url` is not a valid http(s) URL: {err.message}", "url")
    elif sub.thing_id is None and (require_url or not raw_thing):
        bad("MISSING_URL", "`url` is required: the address of the page to thank", "url")

    owner = (params.get("owner") or params.get("user_id") or "").strip().lower()
    for prefix in ("flattr:", "merci:"):  # Flattr's `owner=flattr:NAME` form
        owner = owner.removeprefix(prefix)
    if owner:
        if HANDLE_RE.match(owner):
            sub.owner = owner
        else:
            bad("INVALID_OWNER", "`owner` (or `user_id`) is a Merci handle: 3 to 30 letters, digits or _", "owner")

    sub.title = params.get("title", "").strip()
    if len(sub.title) > 300:
        bad("INVALID_TITLE", "`title` has at most 300 characters", "title")
    sub.description = params.get("description", "").strip()
    if len(sub.description) > 2000:
        bad("INVALID_DESCRIPTION", "`description` has at most 2000 characters", "description")
    category = params.get("category", "").strip().lower() or "rest"
    if category in CATEGORIES:
        sub.category = category
    else:
        bad("INVALID_CATEGORY", f"`category` is one of {', '.join(CATEGORIES)}", "category")
    language = params.get("language", "").strip()
    if language:
        m = LANGUAGE_RE.match(language)
        if m and m.group(1).isascii():
            sub.language = m.group(1).lower()
        else:
            bad("INVALID_LANGUAGE", "`language` is a language code such as en or fr_FR", "language")
    tags = sorted({t.strip().lower() for t in params.get("tags", "").split(",") if t.strip()})
    if len(tags) > 10:
        bad("TOO_MANY_TAGS", "at most 10 `tags`, separated by commas", "tags")
    elif any(len(t) > 50 for t in tags):
        bad("INVALID_TAG", "a tag has at most 50 characters", "tags")
    else:
        sub.tags = tags
    hidden = params.get("hidden", "").strip().lower()
    if hidden in TRUE or hidden in FALSE:
        sub.hidden = hidden in TRUE
    else:
        bad("INVALID_HIDDEN", "`hidden` is 1 or 0", "hidden")
    return sub, errors


async def owner_id(conn: asyncpg.Connection, handle: str | None) -> int | None:
    if handle is None:
        return None
    found: int | None = await conn.fetchval("select id from accounts where handle = $1", handle)
    if found is None:
        raise UserError("UNKNOWN_OWNER", f"no Merci creator is called {handle!r}", "owner")
    return found


async def create_unclaimed(conn: asyncpg.Connection, *, tenant_id: int, sub: Submission,
                           owner_hint: int | None) -> tuple[int, bool]:
    """The thing for `sub.url`, made with the link's listing when new. Returns (thing id,
    whether its owner is to be discovered): a new thing that no verified site covers
    (the database gives it to the one that does, at once) awaits discovery."""
    assert sub.url is not None
    row = await conn.fetchrow(
        "insert into things (tenant_id, url, title, description, category, language, tags, hidden)"
        " values ($1, $2, $3, $4, $5, $6, $7, $8) on conflict (canon) do nothing returning id, owner_id",
        tenant_id, sub.url, sub.title, sub.description, sub.category, sub.language, sub.tags, sub.hidden)
    if row is None:
        existing: int = await conn.fetchval("select id from things where canon = merci_canon($1)", sub.url)
        return existing, False
    if row["owner_id"] is not None:
        return int(row["id"]), False
    await conn.execute("insert into thing_discovery (thing_id, tenant_id, owner_hint) values ($1, $2, $3)",
                       row["id"], tenant_id, owner_hint)
    return int(row["id"]), True


# ---------------------------------------------------------------- discovery (workers, as merci_system)


class _HeadLinks(HTMLParser):
    """`<link rel=… href=…>` elements: what the page's own author declares. Anchors are
    left out on purpose: comments and other people's content are full of them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[list[str], str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag == "link" and a.get("rel"):
            self.links.append((a["rel"].lower().split(), a.get("href", "").strip()))

    handle_startendtag = handle_starttag


def _links(body: bytes) -> list[tuple[list[str], str]]:
    parser = _HeadLinks()
    parser.feed(body.decode("utf-8", errors="replace"))
    parser.close()
    return parser.links


def payment_owner(body: bytes, *, public_url: str) -> str | None:
    """The handle a page's `<link rel="payment">` to Merci names (`owner` or `user_id`)."""
    ours = urlsplit(public_url)
    for rels, href in _links(body):
        if "payment" not in rels:
            continue
        target = urlsplit(href)
        if (target.scheme, target.netloc) != (ours.scheme, ours.netloc):
            continue
        if target.path.rstrip("/") not in ("/submit", "/submit/auto"):
            continue
        query = parse_qs(target.query)
        handle = (query.get("owner") or query.get("user_id") or [""])[0].strip().lower()
        handle = handle.removeprefix("flattr:").removeprefix("merci:")
        if HANDLE_RE.match(handle):
            return handle
    return None


def page_canonical(body: bytes, *, url: str) -> str | None:
    """The page's `<link rel="canonical">`, normalized, when it names a page of the same
    site (a page cannot move itself onto another site's URL)."""
    for rels, href in _links(body):
        if "canonical" in rels and href:
            try:
                target = normalize_url(urljoin(url, href))
            except UserError:
                return None
            same_site = canonical_key(target).split("/", 1)[0] == canonical_key(url).split("/", 1)[0]
            return target if same_site else None
    return None


@dataclass(frozen=True)
class Discovery:
    status: str  # found | none | failed | skipped
    owner_id: int | None = None
    method: str | None = None
    error: str | None = None


async def discover(conn: asyncpg.Connection, *, thing_id: int, public_url: str, policy: FetchPolicy) -> Discovery:
    """Read an unclaimed thing's page (as merci_system): its `<link rel="canonical">`
    names the page's one URL, and its `<link rel="payment">` to Merci is its author's
    proof of ownership of that page, as a verification link is for a site. The escrow
    follows the owner in the same transaction."""
    row = await conn.fetchrow(
        "select d.status, t.url, t.owner_id from thing_discovery d join things t on t.id = d.thing_id"
        " where d.thing_id = $1", thing_id)
    if row is None or row["status"] != "pending" or row["owner_id"] is not None:
        return Discovery("skipped")
    try:
        page = await fetch(row["url"], policy=policy)
    except FetchError as exc:
        return await _record(conn, thing_id=thing_id, canonical=None, owner=None, error=f"{exc.code}: {exc.message}")
    handle = payment_owner(page.body, public_url=public_url)
    owner = None if handle is None else await conn.fetchval("select id from accounts where handle = $1", handle)
    return await _record(conn, thing_id=thing_id, canonical=page_canonical(page.body, url=row["url"]), owner=owner,
                         error=None)


async def _record(conn: asyncpg.Connection, *, thing_id: int, canonical: str | None, owner: int | None,
                  error: str | None) -> Discovery:
    method = None
    async with conn.transaction():
        thing = await conn.fetchrow("select url, owner_id from things where id = $1 for update", thing_id)
        if thing is None or thing["owner_id"] is not None:
            return Discovery("skipped")
        url = thing["url"]
        if canonical is not None and canonical_key(canonical) != canonical_key(url):
            try:
                async with conn.transaction():  # another thing may hold that URL already: keep ours
                    await conn.execute("update things set url = $2 where id = $1", thing_id, canonical)
                url = canonical
            except asyncpg.UniqueViolationError:
                pass
        if owner is not None and not urlsplit(url).query:
            # The page proves itself (and what lies below it) as a verified site would;
            # the database then gives the thing, and its escrow, to the scope's owner.
            await conn.execute(
                "insert into sites (tenant_id, owner_id, url, host, verification_token, verified_at,"
                " verification_method) select a.tenant_id, a.id, $2, $3, $4, now(), 'link' from accounts a"
                " where a.id = $1"
                " on conflict (owner_id, url) do update set verified_at = coalesce(sites.verified_at, now()),"
                " verification_method = coalesce(sites.verification_method, 'link')",
                owner, url, host_of(url), "merci-" + secrets.token_urlsafe(18))
            method = "payment_link"
        found = await conn.fetchval("select merci_assign_thing($1)", thing_id)
        if found is not None and method is None:
            method = "verified_site"  # the canonical URL lies in a verified scope
        status = "found" if found is not None else ("failed" if error else "none")
        await conn.execute(
            "update thing_discovery set status = $2, owner_id = $3, method = $4, error = $5, updated_at = now()"
            " where thing_id = $1", thing_id, status, found, method if found is not None else None,
            None if error is None else error[:1000])
    if found is not None:
        return Discovery("found", found, method)
    return Discovery(status, error=error)


async def stale(conn: asyncpg.Connection, *, older_than_seconds: float) -> list[int]:
    """Discoveries still pending long after their thing was made (the message was lost)."""
    rows = await conn.fetch(
        "update thing_discovery set updated_at = now() where thing_id in (select thing_id from thing_discovery"
        " where status = 'pending' and updated_at < now() - make_interval(secs => $1) limit 100)"
        " returning thing_id", older_than_seconds)
    return [r["thing_id"] for r in rows]


def summary(d: Discovery) -> dict[str, Any]:
    return {"status": d.status, "owner_id": d.owner_id, "method": d.method, "error": d.error}
