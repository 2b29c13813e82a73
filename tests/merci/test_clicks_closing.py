"""A click into a month whose close has started is refused by the API's checks at once
(issue 17), by the supporter's own checks and by a partner's alike, and only after what
is wrong with the click itself. As merci_app, in a transaction rolled back: the month's
close row never shows to anyone else."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import asyncpg
import pytest

from merci import clicks, oauth, partners
from merci.accounts import hash_secret
from merci.db import Scope, set_scope
from merci.errors import UserError
from tests.factories import TenantWorld, make_tenant_world


@pytest.fixture
async def owner(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


Answers = tuple[list[clicks.Accepted | UserError], list[clicks.Accepted | partners.ItemError]]


async def _checks(conn: asyncpg.Connection, fan: TenantWorld, partner: TenantWorld) -> Answers:
    """The supporter's own checks (a new URL, their own thing) and the partner's for them."""
    now = datetime.now(UTC)
    requests = [clicks.check_request(supporter_id=fan.supporter_id, tenant_id=fan.tenant_id, thing_id=None,
                                     url=f"https://{fan.slug}-closing.example/new", idempotency_key="c1"),
                clicks.check_request(supporter_id=fan.creator_id, tenant_id=fan.tenant_id, thing_id=fan.thing_id,
                                     url=None, idempotency_key="c2")]
    await set_scope(conn, Scope(fan.tenant_id))
    own = await clicks.precheck_many(conn, requests, currency="EUR", now=now)
    await set_scope(conn, Scope(partner.tenant_id))
    theirs = await partners.precheck_clicks(conn, tenant_id=partner.tenant_id, currency="EUR", now=now, items=[
        partners.ClickItem(fan.supporter_id, None, f"https://{fan.slug}-closing.example/other", "p1")])
    return own, theirs


def _codes(results: Sequence[object]) -> list[str | None]:
    return [r.code if isinstance(r, (UserError, partners.ItemError)) else None for r in results]


async def test_clicks_into_a_closing_month_are_refused_at_once(owner: asyncpg.Connection) -> None:
    fan, partner = await make_tenant_world(owner), await make_tenant_world(owner)
    async with owner.transaction():
        await set_scope(owner, Scope(partner.tenant_id))
        client, _, _ = await oauth.create_client(owner, tenant_id=partner.tenant_id, name="P app",
                                                 redirect_uris=["https://p.example/cb"], created_by=partner.admin_id)
        await owner.execute("insert into linked_accounts (tenant_id, account_id, client_pk, scopes, token_hash)"
                            " values ($1, $2, $3, '{clicks:write}', $4)", partner.tenant_id, fan.supporter_id, client,
                            hash_secret(f"ml_{partner.slug}"))
    tx = owner.transaction()
    await tx.start()
    try:
        await owner.execute("set local role merci_app")
        own, theirs = await _checks(owner, fan, partner)
        assert _codes(own) == [None, "OWN_THING"] and _codes(theirs) == [None]  # a positive control
        await owner.execute("reset role")
        await owner.execute("insert into month_closes (period, shards, bounds, currency, default_budget)"
                            " values (date_trunc('month', now() at time zone 'UTC')::date, 1, '{0}', 'EUR', 500)")
        await owner.execute("set local role merci_app")
        own, theirs = await _checks(owner, fan, partner)
        assert _codes(own) == ["MONTH_CLOSED", "OWN_THING"] and _codes(theirs) == ["MONTH_CLOSED"]
    finally:
        await tx.rollback()
