"""The outbox of accepted clicks (migration 0024) from the button's batcher: one row per
tenant (RLS lets the API write only its scope's), each written before the click is
answered, and kept unsent when the broker refuses it: the click is accepted all the same.
tests/ops/test_outbox.py runs the whole path with a real Redis."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import asyncpg

from merci.clicks import Accepted, ClickBatcher, Handoff, signed
from merci.db import Scope, scoped
from tests.factories import make_tenant_world


async def test_the_button_batcher_holds_each_tenants_clicks(app_pool: asyncpg.Pool,
                                                            system_pool: asyncpg.Pool) -> None:
    async with system_pool.acquire() as conn:
        a, b = await make_tenant_world(conn), await make_tenant_world(conn)
    sent: list[tuple[Any, ...]] = []

    async def broker_down(batch: list[list[Any]], signature: str, outbox_id: str | None) -> None:
        sent.append((batch, signature, outbox_id))
        raise ConnectionError("broker down")

    batcher = ClickBatcher(Handoff(broker_down, secret="k", outbox=True),
                           lambda tenant_id: scoped(app_pool, Scope(tenant_id)))
    now = datetime.now(UTC)
    accepted = [Accepted(w.supporter_id, w.tenant_id, None, f"https://{w.slug}.example/held/{i}", f"held-{w.slug}-{i}",
                         now) for i, w in enumerate((a, b, a))]
    assert await asyncio.gather(*(batcher.submit(c) for c in accepted)) == [None, None, None]
    assert sorted(len(batch) for batch, _, _ in sent) == [1, 2]  # one batch per tenant
    assert all(signed(batch, signature, "k") for batch, signature, _ in sent)
    async with system_pool.acquire() as conn:
        rows = await conn.fetch("select tenant_id, sent_at is null as unsent, jsonb_array_length(batch) as n"
                                " from click_outbox where id = any($1::uuid[]) order by tenant_id",
                                [outbox_id for _, _, outbox_id in sent])
        assert [tuple(r) for r in rows] == sorted([(a.tenant_id, True, 2), (b.tenant_id, True, 1)])
        assert await conn.fetchval("select count(*) from click_receipts where refusal is null"
                                   " and idempotency_key = any($1::text[])", [c.idempotency_key for c in accepted]) == 3
        await conn.execute("delete from click_outbox where id = any($1::uuid[])", [i for _, _, i in sent])
