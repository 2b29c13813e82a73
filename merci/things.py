"""Things: anything with a URL that can be clicked. A creator submits their own;
an unknown URL clicked by a supporter becomes an unclaimed thing (auto-submit),
which the owner of a verified site for that URL may claim."""

from __future__ import annotations

from typing import Any

import asyncpg

from merci.errors import UserError
from merci.urls import host_of, normalize_url

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


def clean_listing(*, title: str, description: str, category: str, language: str | None,
                  tags: list[str]) -> dict[str, Any]:
    title = title.strip()
    if not 1 <= len(title) <= 300:
        raise UserError("INVALID_TITLE", "a title has 1 to 300 characters", "title")
    if len(description) > 2000:
        raise UserError("INVALID_DESCRIPTION", "a description has at most 2000 characters", "description")
    category = category.strip().lower()
    if category not in CATEGORIES:
        raise UserError("INVALID_CATEGORY", f"category is one of {', '.join(CATEGORIES)}", "category")
    if language is not None:
        language = language.strip().lower()
        if len(language) != 2 or not language.isalpha() or not language.isascii():
            raise UserError("INVALID_LANGUAGE", "language is a two-letter ISO 639-1 code", "language")
    clean_tags = sorted({t.strip().lower() for t in tags if t.strip()})
    if len(clean_tags) > 10:
        raise UserError("TOO_MANY_TAGS", "at most 10 tags", "tags")
    if any(len(t) > 50 for t in clean_tags):
        raise UserError("INVALID_TAG", "a tag has at most 50 characters", "tags")
    return {"title": title, "description": description.strip(), "category": category, "language": language,
            "tags": clean_tags}


async def verified_site_for(conn: asyncpg.Connection, *, owner_id: int, url: str) -> int | None:
    """The owner's verified site covering this URL's host (subdomains included)."""
    host = host_of(url)
    site_id: int | None = await conn.fetchval(
        "select id from sites where owner_id = $1 and verified_at is not null"
        " and ($2 = host or $2 like '%.' || host) order by length(host) desc limit 1",
        owner_id, host,
    )
    return site_id


async def submit_thing(
    conn: asyncpg.Connection, *, tenant_id: int, owner_id: int, url: str, title: str, description: str = "",
    category: str = "rest", language: str | None = None, tags: list[str] | None = None, hidden: bool = False,
) -> int:
    url = normalize_url(url)
    listing = clean_listing(title=title, description=description, category=category, language=language,
                            tags=tags or [])
    existing = await conn.fetchrow("select id, owner_id from things where url = $1", url)
    if existing is not None:
        if existing["owner_id"] == owner_id:
            raise UserError("ALREADY_SUBMITTED", "you have already submitted this URL", "url")
        if existing["owner_id"] is None:
            raise UserError("UNCLAIMED_EXISTS", "this URL is an unclaimed thing: claim it instead", "url")
        raise UserError("URL_TAKEN", "this URL belongs to another creator", "url")
    site_id = await verified_site_for(conn, owner_id=owner_id, url=url)
    try:
        async with conn.transaction():
            thing_id: int = await conn.fetchval(
                "insert into things (tenant_id, owner_id, site_id, url, title, description, category, language,"
                " tags, hidden, claimed_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now()) returning id",
                tenant_id, owner_id, site_id, url, listing["title"], listing["description"], listing["category"],
                listing["language"], listing["tags"], hidden,
            )
    except asyncpg.UniqueViolationError as exc:
        raise UserError("URL_TAKEN", "this URL was just submitted by someone else", "url") from exc
    return thing_id


async def claim_thing(conn: asyncpg.Connection, *, tenant_id: int, owner_id: int, thing_id: int) -> int:
    """Claim an unclaimed thing; the caller then releases its escrow (after commit)."""
    row = await conn.fetchrow("select id, owner_id, url from things where id = $1 for update", thing_id)
    if row is None:
        raise UserError("NOT_FOUND", "no such thing", "thingId")
    if row["owner_id"] == owner_id:
        raise UserError("ALREADY_CLAIMED", "you own this thing already", "thingId")
    if row["owner_id"] is not None:
        raise UserError("ALREADY_CLAIMED", "this thing belongs to another creator", "thingId")
    site_id = await verified_site_for(conn, owner_id=owner_id, url=row["url"])
    if site_id is None:
        raise UserError("NOT_VERIFIED", "verify a site for this URL's host before claiming it", "thingId")
    await conn.execute(
        "update things set owner_id = $1, tenant_id = $2, site_id = $3, claimed_at = now() where id = $4",
        owner_id, tenant_id, site_id, thing_id,
    )
    return thing_id


async def thing_by_url(conn: asyncpg.Connection, url: str) -> dict[str, Any] | None:
    row = await conn.fetchrow(f"select {THING_COLUMNS} from things where url = $1", url)
    return dict(row) if row else None
