"""What a Merci button shows (a thing's click count, the supporter's state) and what
a click from one of Merci's own pages does (the button's iframe, /submit).

A button click is keyed by supporter, thing and month, so clicking twice, or a
browser resending the form, counts once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import asyncpg

from merci import clicks, ledger
from merci.autosubmit import Submission, create_unclaimed, owner_id
from merci.budgets import MIN_BUDGET
from merci.clicks import Accepted
from merci.errors import UserError
from merci.periods import period_of

LOGGED_OUT, CAN_CLICK, CLICKED, OWN, NO_MEANS = "logged_out", "can_click", "clicked", "own", "no_means"


@dataclass(frozen=True)
class Button:
    thing: dict[str, Any] | None  # None: a URL nobody clicked yet
    url: str
    title: str
    owner_handle: str | None
    count: int
    state: str


async def thing_for(conn: asyncpg.Connection, sub: Submission) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        "select t.id, t.url, t.title, t.owner_id, a.handle as owner_handle,"
        " (select coalesce(sum(s.clicks), 0)::bigint from thing_stats s where s.thing_id = t.id) as count"
        " from things t left join accounts a on a.id = t.owner_id where t.id = $1 or t.canon = merci_canon($2)"
        " order by (t.id = $1) desc nulls last limit 1", sub.thing_id, sub.url)
    return dict(row) if row else None


def click_key(period: datetime | Any, target: str) -> str:
    return f"button:{period:%Y-%m}:{hashlib.sha256(target.encode()).hexdigest()[:32]}"


# A logged-in supporter's state: $1 supporter, $2 thing, $3 period, $4 click key, $5
# currency, $6 URL.
STATE_SQL = ("select exists (select 1 from clicks where supporter_id = $1 and ((thing_id = $2 and period = $3)"
             "               or idempotency_key = $4)) as clicked,"
             f" ({ledger.owner_balance_sql(owner='$1', currency='$5')}) as balance,"
             " merci_owns($1, merci_canon($6)) as own")


async def load(conn: asyncpg.Connection, *, sub: Submission, account_id: int | None, now: datetime,
               currency: str) -> Button:
    """The button for a submission, as `account_id` (None: logged out) sees it."""
    hint = await owner_id(conn, sub.owner)  # an unknown owner is an error, not a silent button
    thing = await thing_for(conn, sub)
    if thing is None and sub.thing_id is not None:
        raise UserError("UNKNOWN_THING", "no such thing", "thing")
    url = thing["url"] if thing else sub.url or ""
    title = (thing["title"] if thing else "") or sub.title or url
    owner_handle = thing["owner_handle"] if thing and thing["owner_handle"] else sub.owner
    count = int(thing["count"]) if thing else 0
    # Unclaimed, the owner the link names is who it would go to.
    owner = thing["owner_id"] if thing and thing["owner_id"] else hint
    if account_id is None:
        state = LOGGED_OUT
    elif owner == account_id:
        state = OWN
    else:
        period = period_of(now)
        row = await conn.fetchrow(
            STATE_SQL, account_id, thing["id"] if thing else None, period, click_key(period, url), currency, url)
        state = (OWN if row["own"] else CLICKED if row["clicked"] else NO_MEANS if row["balance"] < MIN_BUDGET
                 else CAN_CLICK)
    return Button(thing, url, title, owner_handle, count, state)


async def click(conn: asyncpg.Connection, *, tenant_id: int, account_id: int, sub: Submission, now: datetime,
                currency: str, client_hash: str | None = None) -> tuple[Accepted, int | None]:
    """Check a click and make its thing when the URL is new (unclaimed, with the
    link's title and owner hint). Returns the click to queue, and the new thing's id
    whose owner the workers should discover (None when the thing existed)."""
    thing = await thing_for(conn, sub)
    if thing is None and sub.thing_id is not None:
        raise UserError("UNKNOWN_THING", "no such thing", "thing")
    url = thing["url"] if thing else sub.url
    assert url is not None
    key = click_key(period_of(now), url)
    accepted = await clicks.precheck(
        conn, supporter_id=account_id, tenant_id=tenant_id, thing_id=thing["id"] if thing else None,
        url=None if thing else url, idempotency_key=key, currency=currency, now=now, client_hash=client_hash)
    if accepted.thing_id is not None:
        return accepted, None
    hint = await owner_id(conn, sub.owner)
    if hint == account_id:
        raise UserError("OWN_THING", "you cannot click your own thing", "url")
    thing_id, created = await create_unclaimed(conn, tenant_id=tenant_id, sub=sub, owner_hint=hint)
    return replace(accepted, thing_id=thing_id, url=None), thing_id if created else None
