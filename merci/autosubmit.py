"""Auto-submit: a button or link naming a URL nobody registered yet, with Flattr's
parameters (`owner`/`user_id`, `url`, `title`, `description`, `language`, `tags`,
`category`, `hidden`), and the discovery of the owner of such an unclaimed thing.

The owner a link names is only a hint: anyone can write a link. A thing goes to
that creator when they verified a site covering its host, or when the page itself
says so with `<link rel="payment" href="https://MERCI/submit?owner=HANDLE">` (read
through the SSRF guard). Until then its shares wait in escrow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg

from merci.accounts import HANDLE_RE
from merci.errors import UserError
from merci.fetch import FetchError, FetchPolicy, fetch
from merci.ids import from_global
from merci.things import CATEGORIES
from merci.urls import host_of, normalize_url

DISCOVER_ACTOR = "things.discover"
DISCOVER_QUEUE = "directory"
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
    """The thing for `sub.url`, created unclaimed with the link's listing when new.
    Returns (thing id, created); a created one awaits owner discovery."""
    assert sub.url is not None
    thing_id: int | None = await conn.fetchval(
        "insert into things (tenant_id, url, title, description, category, language, tags, hidden)"
        " values ($1, $2, $3, $4, $5, $6, $7, $8) on conflict (url) do nothing returning id",
        tenant_id, sub.url, sub.title, sub.description, sub.category, sub.language, sub.tags, sub.hidden)
    if thing_id is None:
        existing: int = await conn.fetchval("select id from things where url = $1", sub.url)
        return existing, False
    await conn.execute("insert into thing_discovery (thing_id, tenant_id, owner_hint) values ($1, $2, $3)",
                       thing_id, tenant_id, owner_hint)
    return thing_id, True


# ---------------------------------------------------------------- discovery (workers, as merci_system)


class _PaymentLinks(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): (v or "") for k, v in attrs}
        if tag in ("link", "a") and "payment" in a.get("rel", "").lower().split():
            self.hrefs.append(a.get("href", "").strip())

    handle_startendtag = handle_starttag


def payment_owner(body: bytes, *, public_url: str) -> str | None:
    """The handle a page's rel="payment" link to Merci names (`owner` or `user_id`)."""
    parser = _PaymentLinks()
    parser.feed(body.decode("utf-8", errors="replace"))
    parser.close()
    ours = urlsplit(public_url)
    for href in parser.hrefs:
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


@dataclass(frozen=True)
class Discovery:
    status: str  # found | none | failed | skipped
    owner_id: int | None = None
    method: str | None = None
    error: str | None = None


async def discover(conn: asyncpg.Connection, *, thing_id: int, public_url: str, policy: FetchPolicy) -> Discovery:
    """Find an unclaimed thing's owner; assign it when proven. The caller releases the
    escrow after commit (the thing's shares so far go to its owner)."""
    row = await conn.fetchrow(
        "select d.status, d.owner_hint, t.url, t.owner_id from thing_discovery d join things t on t.id = d.thing_id"
        " where d.thing_id = $1", thing_id)
    if row is None or row["status"] != "pending" or row["owner_id"] is not None:
        return Discovery("skipped")
    found: tuple[int, str] | None = None
    error = None
    if row["owner_hint"] is not None:
        site = await conn.fetchval(
            "select s.id from sites s where s.owner_id = $1 and s.verified_at is not null"
            " and (s.host = $2 or $2 like '%.' || s.host) limit 1", row["owner_hint"], host_of(row["url"]))
        if site is not None:
            found = (row["owner_hint"], "verified_site")
    if found is None:
        try:
            page = await fetch(row["url"], policy=policy)
        except FetchError as exc:
            error = f"{exc.code}: {exc.message}"
        else:
            handle = payment_owner(page.body, public_url=public_url)
            owner = None if handle is None else await conn.fetchval("select id from accounts where handle = $1",
                                                                    handle)
            if owner is not None:
                found = (owner, "payment_link")
    return await _record(conn, thing_id=thing_id, found=found, error=error)


async def _record(conn: asyncpg.Connection, *, thing_id: int, found: tuple[int, str] | None,
                  error: str | None) -> Discovery:
    async with conn.transaction():
        if found is not None:
            owner, method = found
            # The owner's tenant takes the thing, as a claim would; only while still unclaimed.
            url = await conn.fetchval("select url from things where id = $1", thing_id)
            claimed = await conn.execute(
                "update things t set owner_id = $2, tenant_id = a.tenant_id, claimed_at = now(),"
                " site_id = (select s.id from sites s where s.owner_id = $2 and s.verified_at is not null"
                "            and ($3 = s.host or $3 like '%.' || s.host) order by length(s.host) desc limit 1)"
                " from accounts a where a.id = $2 and t.id = $1 and t.owner_id is null", thing_id, owner, host_of(url))
            if claimed != "UPDATE 1":
                found = None
        status = "found" if found else ("failed" if error else "none")
        await conn.execute(
            "update thing_discovery set status = $2, owner_id = $3, method = $4, error = $5, updated_at = now()"
            " where thing_id = $1", thing_id, status, found[0] if found else None, found[1] if found else None,
            None if error is None else error[:1000])
    if found:
        return Discovery("found", found[0], found[1])
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
