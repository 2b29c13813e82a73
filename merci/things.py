"""Things: anything with a URL that can be clicked. A thing belongs to the creator
whose verified site covers its canonical URL (the database decides, migration 0015);
anything else, submitted or auto-submitted by a click, is unclaimed and its shares
wait in escrow until a creator proves a site covering it."""

from __future__ import annotations

from datetime import date
from typing import Any

import asyncpg

from merci.errors import Checks, UserError
from merci.paging import Keyset
from merci.urls import normalize_url

CATEGORIES = ("text", "images", "video", "audio", "software", "people", "rest")
THING_COLUMNS = ("id, tenant_id, owner_id, site_id, url, title, description, category, language, tags, hidden,"
                 " created_at, claimed_at")


def visible_sql(tenant_wide: str) -> str:
    """Who may see a thing, as a condition on `things`; every read of things applies it
    (by id, node, URL, entity reference, and every list). Hidden things are unlisted, as
    Flattr's were: their buttons still take clicks, but they show only to their owner, to
    their tenant's admins and API keys (`tenant_wide`: a boolean SQL parameter, e.g. "$2",
    bound to Principal.tenant_wide) and to the supporters who clicked or subscribed to
    them (their own history), never to anyone else."""
    return ("(not things.hidden or things.owner_id = merci_account()"
            f" or ({tenant_wide}::boolean and things.tenant_id = merci_tenant())"
            " or exists (select 1 from clicks c where c.supporter_id = merci_account() and c.thing_id = things.id)"
            " or exists (select 1 from subscriptions s where s.supporter_id = merci_account()"
            " and s.thing_id = things.id))")


def owned_by(*, owner_id: int, tenant_wide: bool) -> Keyset:
    """A creator's things, newest first, as the caller may see them."""
    return Keyset(f"select {THING_COLUMNS} from things where owner_id = $1 and {visible_sql('$2')}",
                  (owner_id, tenant_wide))


def on_site(*, site_id: int, tenant_wide: bool) -> Keyset:
    """A site's things, newest first, as the caller may see them."""
    return Keyset(f"select {THING_COLUMNS} from things where site_id = $1 and {visible_sql('$2')}",
                  (site_id, tenant_wide))


async def visible_things(conn: asyncpg.Connection, *, thing_ids: list[int],
                         tenant_wide: bool) -> dict[int, dict[str, Any]]:
    """The things of `thing_ids` the caller may see, by id."""
    rows = await conn.fetch(f"select {THING_COLUMNS} from things where id = any($1::bigint[])"
                            f" and {visible_sql('$2')}", thing_ids, tenant_wide)
    return {r["id"]: dict(r) for r in rows}


async def clicks_in_period(conn: asyncpg.Connection, *, thing_ids: list[int], period: date) -> dict[int, int]:
    """The public click counters of the things that had clicks in the month, by id."""
    rows = await conn.fetch(
        "select thing_id, clicks from thing_stats where period = $1 and thing_id = any($2::bigint[])",
        period, thing_ids)
    return {r["thing_id"]: int(r["clicks"]) for r in rows}


# Every click a thing ever had, from its public counters (badges show it).
_ALL_CLICKS = "(select coalesce(sum(s.clicks), 0) from thing_stats s where s.thing_id = t.id)"


async def all_clicks(conn: asyncpg.Connection, *, thing_id: int) -> int | None:
    """None: no such thing."""
    value = await conn.fetchval(f"select {_ALL_CLICKS} from things t where t.id = $1", thing_id)
    return None if value is None else int(value)


async def all_clicks_at(conn: asyncpg.Connection, *, url: str) -> int | None:
    """The thing's at this URL (as stored, normalized); None: no such thing."""
    value = await conn.fetchval(f"select {_ALL_CLICKS} from things t where t.url = $1", url)
    return None if value is None else int(value)


async def all_clicks_of_creator(conn: asyncpg.Connection, *, handle: str) -> int | None:
    """Every click on every thing the creator owns; None: no such account."""
    value = await conn.fetchval(
        "select (select coalesce(sum(s.clicks), 0) from things t join thing_stats s"
        " on s.thing_id = t.id where t.owner_id = a.id) from accounts a where a.handle = $1", handle)
    return None if value is None else int(value)


def clean_listing(*, title: str, description: str, category: str, language: str | None,
                  tags: list[str]) -> dict[str, Any]:
    """A thing's listing, checked; refuses with every field that is wrong (UserErrors)."""
    checks = Checks()
    title = title.strip()
    if not 1 <= len(title) <= 300:
        checks.refuse(UserError("INVALID_TITLE", "a title has 1 to 300 characters", "title"))
    if len(description) > 2000:
        checks.refuse(UserError("INVALID_DESCRIPTION", "a description has at most 2000 characters", "description"))
    category = category.strip().lower()
    if category not in CATEGORIES:
        checks.refuse(UserError("INVALID_CATEGORY", f"category is one of {', '.join(CATEGORIES)}", "category"))
    if language is not None:
        language = language.strip().lower()
        if len(language) != 2 or not language.isalpha() or not language.isascii():
            checks.refuse(UserError("INVALID_LANGUAGE", "language is a two-letter ISO 639-1 code", "language"))
    clean_tags = sorted({t.strip().lower() for t in tags if t.strip()})
    if len(clean_tags) > 10:
        checks.refuse(UserError("TOO_MANY_TAGS", "at most 10 tags", "tags"))
    if any(len(t) > 50 for t in clean_tags):
        checks.refuse(UserError("INVALID_TAG", "a tag has at most 50 characters", "tags"))
    checks.done()
    return {"title": title, "description": description.strip(), "category": category, "language": language,
            "tags": clean_tags}


async def submit_thing(
    conn: asyncpg.Connection, *, tenant_id: int, owner_id: int, url: str, title: str, description: str = "",
    category: str = "rest", language: str | None = None, tags: list[str] | None = None, hidden: bool = False,
) -> int:
    """Register a thing by URL. It belongs to whoever proved a site covering it (the
    database decides, see migration 0015): the caller when the URL is in one of their
    verified scopes, another creator when in theirs, nobody (escrow) otherwise."""
    checks = Checks()
    url = checks(normalize_url, url)
    listing = checks(clean_listing, title=title, description=description, category=category, language=language,
                     tags=tags or [])
    checks.done()
    existing = await conn.fetchrow("select id, owner_id from things where canon = merci_canon($1)", url)
    if existing is not None:
        if existing["owner_id"] == owner_id:
            raise UserError("ALREADY_SUBMITTED", "you have already submitted this URL", "url")
        if existing["owner_id"] is not None:
            raise UserError("URL_TAKEN", "this URL is on a site another creator verified", "url")
        if await conn.fetchval("select merci_assign_thing($1)", existing["id"]) != owner_id:
            raise UserError("UNCLAIMED_EXISTS",
                            "this URL is an unclaimed thing: verify a site covering it to claim it", "url")
        # Proven since it was auto-submitted: it is the caller's now, with the caller's listing.
        await conn.execute(
            "update things set title = $2, description = $3, category = $4, language = $5, tags = $6, hidden = $7"
            " where id = $1", existing["id"], listing["title"], listing["description"], listing["category"],
            listing["language"], listing["tags"], hidden)
        return int(existing["id"])
    thing_id: int | None = await conn.fetchval(
        "insert into things (tenant_id, url, title, description, category, language, tags, hidden)"
        " values ($1, $2, $3, $4, $5, $6, $7, $8) on conflict (canon) do nothing returning id",
        tenant_id, url, listing["title"], listing["description"], listing["category"], listing["language"],
        listing["tags"], hidden,
    )
    if thing_id is None:
        raise UserError("URL_TAKEN", "this URL was just submitted by someone else", "url")
    return thing_id


async def claim_thing(conn: asyncpg.Connection, *, owner_id: int, thing_id: int) -> int:
    """Take a thing covered by one of the caller's verified sites, with its escrow (in
    this transaction). Anything the scopes do not give the caller is refused, and the
    caller's transaction is rolled back with the refusal."""
    # Read without FOR UPDATE: a claimed thing of another tenant is not the caller's to
    # lock (RLS), yet its answer is ALREADY_CLAIMED, not NOT_FOUND.
    row = await conn.fetchrow("select id, owner_id from things where id = $1", thing_id)
    if row is None:
        raise UserError("NOT_FOUND", "no such thing", "thingId")
    if row["owner_id"] == owner_id:
        raise UserError("ALREADY_CLAIMED", "you own this thing already", "thingId")
    new_owner = await conn.fetchval("select merci_assign_thing($1)", thing_id)
    if new_owner == owner_id:
        return thing_id
    if new_owner is not None:
        raise UserError("ALREADY_CLAIMED", "this thing belongs to another creator", "thingId")
    raise UserError("NOT_VERIFIED", "verify a site covering this URL before claiming it", "thingId")


async def thing_by_url(conn: asyncpg.Connection, url: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(f"select {THING_COLUMNS} from things where canon = merci_canon($1)", url)
    return dict(row) if row else None
