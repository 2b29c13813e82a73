"""The partner API's domain: bulk thing registration, clicks on behalf of linked
supporters, and per-thing, per-month analytics of a tenant's own things.

Bulk calls take at most MAX_BATCH items. Malformed input refuses the whole call
(nothing changes); a refusal that depends on the state of one item (a URL another
creator owns, a supporter who has not linked their account) refuses that item only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import asyncpg

from merci.budgets import MIN_BUDGET
from merci.clicks import Accepted, check_key
from merci.errors import Checks, UserError
from merci.paging import Keyset, Page, Window
from merci.periods import period_of
from merci.things import THING_COLUMNS, clean_listing
from merci.urls import canonical_key, normalize_url

MAX_BATCH = 1000
MAX_PARTNER_KEY = 180  # namespaced as `p<tenant>:<key>`, within the 200 a click key may have


@dataclass
class ItemError:
    path: list[str]  # e.g. ["things", "3", "url"]
    code: str
    message: str


class BatchRefused(UserError):
    """Malformed items: the whole call is refused and nothing changes."""

    def __init__(self, errors: list[ItemError]) -> None:
        super().__init__(errors[0].code, errors[0].message, errors[0].path[0])
        self.errors = errors


def check_batch(items: list[Any], name: str) -> None:
    if not items:
        raise UserError("EMPTY_BATCH", f"give at least one item in `{name}`", name)
    if len(items) > MAX_BATCH:
        raise UserError("BATCH_TOO_LARGE", f"at most {MAX_BATCH} items per call; got {len(items)}: split the batch",
                        name)


def _item_error(name: str, index: int, err: UserError) -> ItemError:
    return ItemError([name, str(index), *([err.field] if err.field else [])], err.code, err.message)


# ---------------------------------------------------------------- registerThings


@dataclass
class ThingItem:
    url: str
    title: str
    description: str = ""
    category: str = "rest"
    language: str | None = None
    tags: list[str] = field(default_factory=list)
    hidden: bool = False
    owner_id: int | None = None  # a creator of the registering tenant (theirs only if their verified site covers it)


# The owner a partner names is checked to be its creator, but the database gives each
# thing to whoever's verified site covers it (migration 0015), as for everyone else.
REGISTER_SQL = """
insert into things (tenant_id, url, title, description, category, language, tags, hidden)
select $1, x.url, x.title, x.description, x.category, x.language,
       array(select jsonb_array_elements_text(x.tags::jsonb)), x.hidden
  from unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::boolean[])
       as x(url, title, description, category, language, tags, hidden)
 order by x.url
on conflict (canon) do nothing
returning id, canon
"""


async def register_things(conn: asyncpg.Connection, *, tenant_id: int,
                          items: list[ThingItem]) -> tuple[list[int | None], list[ItemError]]:
    """Register things for the tenant's creators. Returns one thing id per item (None
    where refused) and the per-item refusals. Registering a URL again for the same
    owner returns the same thing, so a partner may safely resend a whole batch."""
    check_batch(items, "things")
    errors: list[ItemError] = []
    clean: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        checks = Checks()  # each item: all its fields' refusals
        url = checks(normalize_url, item.url)
        listing = checks(clean_listing, title=item.title, description=item.description, category=item.category,
                         language=item.language, tags=item.tags)
        if checks.failed:
            errors.extend(_item_error("things", i, err) for err in checks.errors)
            continue
        if canonical_key(url) in seen:
            errors.append(ItemError(["things", str(i), "url"], "DUPLICATE_URL",
                                    f"the same page as item {seen[canonical_key(url)]} (after normalization)"))
            continue
        seen[canonical_key(url)] = i
        clean.append({"i": i, "url": url, "owner_id": item.owner_id, "hidden": item.hidden, **listing})
    owners = sorted({c["owner_id"] for c in clean if c["owner_id"] is not None})
    if owners:
        mine = {r["id"] for r in await conn.fetch(
            "select id from accounts where id = any($1::bigint[]) and tenant_id = $2", owners, tenant_id)}
        for c in clean:
            if c["owner_id"] is not None and c["owner_id"] not in mine:
                errors.append(ItemError(["things", str(c["i"]), "ownerId"], "UNKNOWN_OWNER",
                                        "the owner is not a creator of your tenant"))
    if errors:
        raise BatchRefused(sorted(errors, key=lambda e: int(e.path[1])))

    keys = {c["url"]: canonical_key(c["url"]) for c in clean}
    inserted = {r["canon"]: r["id"] for r in await conn.fetch(
        REGISTER_SQL, tenant_id, [c["url"] for c in clean], [c["title"] for c in clean],
        [c["description"] for c in clean], [c["category"] for c in clean], [c["language"] for c in clean],
        [json.dumps(c["tags"]) for c in clean], [c["hidden"] for c in clean])}
    existing = {r["canon"]: dict(r) for r in await conn.fetch(
        "select id, canon, owner_id from things where canon = any($1::text[])",
        [k for k in keys.values() if k not in inserted])}
    ids: list[int | None] = [None] * len(items)
    refused: list[ItemError] = []
    for c in clean:
        key = keys[c["url"]]
        if key in inserted:
            ids[c["i"]] = inserted[key]
            continue
        other = existing[key]
        if other["owner_id"] == c["owner_id"] and c["owner_id"] is not None:
            ids[c["i"]] = other["id"]  # registered before, for the same creator
        elif other["owner_id"] is None:
            refused.append(ItemError(["things", str(c["i"]), "url"], "UNCLAIMED_EXISTS",
                                     "this URL is an unclaimed thing: its creator claims it with a verified site"))
        else:
            refused.append(ItemError(["things", str(c["i"]), "url"], "URL_TAKEN",
                                     "this URL is on a site another creator verified"))
    return ids, refused


# ---------------------------------------------------------------- submitClicks


@dataclass
class ClickItem:
    supporter_id: int
    thing_id: int | None
    url: str | None
    idempotency_key: str


def partner_key(tenant_id: int, key: str) -> str:
    """Partners' keys live in their own namespace: they never collide with the
    supporter's own clicks, and the click.accepted webhook finds its partner by it."""
    return f"p{tenant_id}:{key}"


def check_clicks(items: list[ClickItem]) -> list[ClickItem]:
    check_batch(items, "clicks")
    errors: list[ItemError] = []
    clean: list[ClickItem] = []
    for i, item in enumerate(items):
        checks = Checks()
        key = checks(check_key, item.idempotency_key)
        if key is not None and len(key) > MAX_PARTNER_KEY:
            checks.refuse(UserError("INVALID_IDEMPOTENCY_KEY",
                                    f"idempotencyKey has 1 to {MAX_PARTNER_KEY} characters", "idempotencyKey"))
        if (item.thing_id is None) == (item.url is None):
            checks.refuse(UserError("INVALID_TARGET", "give either thingId or url", "thingId"))
        url = None if item.url is None else checks(normalize_url, item.url)
        if checks.failed:
            errors.extend(_item_error("clicks", i, err) for err in checks.errors)
            continue
        clean.append(ClickItem(item.supporter_id, item.thing_id, url, key))
    if errors:
        raise BatchRefused(errors)
    return clean


async def precheck_clicks(conn: asyncpg.Connection, *, tenant_id: int, items: list[ClickItem], currency: str,
                          now: datetime) -> list[Accepted | ItemError]:
    """The API's cheap checks for each click, in one round trip (the workers apply the
    rules for good). Only supporters linked to this tenant are answered for."""
    items = check_clicks(items)
    period = period_of(now)
    rows = await conn.fetch(
        "select * from merci_partner_precheck($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5, $6)",
        [c.supporter_id for c in items], [c.thing_id for c in items], [c.url for c in items],
        [partner_key(tenant_id, c.idempotency_key) for c in items], period, currency)
    # The month's close has started: the workers would refuse them all (issue 17).
    closing = await conn.fetchval("select exists (select 1 from month_closes where period = $1)", period)
    out: list[Accepted | ItemError] = []
    first_of_key: dict[tuple[int, str], Accepted] = {}
    first_of_target: dict[tuple[int, object], str] = {}
    for i, (item, row) in enumerate(zip(items, rows, strict=True)):
        def refuse(code: str, message: str, where: str = "thingId" if item.thing_id else "url",
                   i: int = i) -> ItemError:
            return ItemError(["clicks", str(i), where], code, message)

        key = partner_key(tenant_id, item.idempotency_key)
        if not row["linked"]:
            out.append(refuse("NOT_LINKED", "this supporter has not linked their Merci account to your platform",
                              "supporterId"))
            continue
        if (item.supporter_id, key) in first_of_key:  # the same click twice in one call
            out.append(first_of_key[(item.supporter_id, key)])
            continue
        accepted = Accepted(item.supporter_id, row["home_tenant"], row["thing_id"],
                            None if row["thing_id"] else item.url, key, now, source="partner")
        if row["replayed"]:
            out.append(accepted)  # sent before: answer as before, count nothing new
            continue
        if item.thing_id is not None and row["thing_id"] is None:
            out.append(refuse("UNKNOWN_THING", "no such thing"))
        elif row["own"]:
            out.append(refuse("OWN_THING", "a supporter cannot click their own thing"))
        elif row["clicked"] or first_of_target.get((item.supporter_id, row["thing_id"] or item.url)):
            out.append(refuse("ALREADY_THIS_MONTH", "this supporter already clicked this thing this month"))
        elif row["balance"] < MIN_BUDGET:
            out.append(refuse("NO_MEANS", "this supporter has no means to click (their balance is too low)",
                              "supporterId"))
        elif closing:  # (last: what is wrong with the click itself says more)
            out.append(refuse("MONTH_CLOSED", "this month is being closed: clicks count from the next one"))
        else:
            first_of_key[(item.supporter_id, key)] = accepted
            first_of_target[(item.supporter_id, row["thing_id"] or item.url)] = key
            out.append(accepted)
    return out


# ---------------------------------------------------------------- analytics


@dataclass
class ThingMonth:
    thing: dict[str, Any]
    period: date
    clicks: int
    earnings: int | None  # None while the month is open


async def analytics(conn: asyncpg.Connection, *, period: date,
                    window: Window) -> tuple[Page, list[ThingMonth], bool]:
    """A page of the tenant's own things clicked in `period`, by id; earnings once it is
    closed. (How many there are in all: analytics_totals.)"""
    closed = await conn.fetchval("select status = 'done' from month_closes where period = $1", period) or False
    cols = ", ".join(f"t.{c.strip()}" for c in THING_COLUMNS.split(","))
    page = await Keyset(
        f"select {cols}, s.clicks from things t join thing_stats s on s.thing_id = t.id and s.period = $1"
        " where t.tenant_id = merci_tenant() and s.clicks > 0", (period,), key="t.id", descending=False,
    ).page(conn, window)
    rows = page.rows
    earned: dict[int, int] = {}
    if closed and rows:
        earned = {r["thing_id"]: int(r["amount"]) for r in await conn.fetch(
            "select thing_id, amount from merci_thing_earnings($1, $2::bigint[])", period, [r["id"] for r in rows])}
    out = [ThingMonth({k: r[k] for k in r.keys() if k != "clicks"}, period, int(r["clicks"]),
                      earned.get(r["id"], 0) if closed else None) for r in rows]
    return page, out, closed


async def analytics_totals(conn: asyncpg.Connection, *, period: date) -> tuple[int, int, int | None]:
    """(things clicked, clicks, earnings or None while open) over all the tenant's things."""
    row = await conn.fetchrow(
        "select count(*)::int as things, coalesce(sum(s.clicks), 0)::bigint as clicks,"
        " coalesce(array_agg(t.id) filter (where t.id is not null), '{}') as ids"
        " from things t join thing_stats s on s.thing_id = t.id and s.period = $1"
        " where t.tenant_id = merci_tenant() and s.clicks > 0", period)
    closed = await conn.fetchval("select status = 'done' from month_closes where period = $1", period) or False
    earnings = None
    if closed:
        earnings = int(await conn.fetchval(
            "select coalesce(sum(amount), 0)::bigint from merci_thing_earnings($1, $2::bigint[])",
            period, list(row["ids"])))
    return int(row["things"]), int(row["clicks"]), earnings
