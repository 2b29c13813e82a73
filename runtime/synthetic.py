"""Synthetic months for benchmarks and fault tests: set-based and deterministic,
so two fresh databases seeded alike hold identical rows (ids included)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import asyncpg


async def seed_month(
    conn: asyncpg.Connection, *, period: date, supporters: int, things: int, clicks_per_supporter: int,
    creators: int | None = None, tenant_id: int = 1, currency: str = "EUR",
    progress: Callable[[str], None] | None = None, chunk: int = 200_000,
) -> dict[str, int]:
    """Creators own every other thing (the rest are unclaimed); each supporter is
    funded, has a budget, and clicks `clicks_per_supporter` distinct things."""
    creators = creators or max(1, things // 2)
    if clicks_per_supporter > things or things % 37 == 0:
        # (s*31 + k*37) mod things is distinct for distinct k only then.
        raise ValueError("each supporter clicks distinct things: clicks_per_supporter <= things, things % 37 != 0")
    say = progress or (lambda _: None)
    tag = f"{period:%Y%m}"
    base = await conn.fetchval("select coalesce(max(id), 0) from accounts")

    say("accounts")
    await conn.execute(
        "insert into accounts (tenant_id, handle) select $1, 'c' || $2 || '_' || g from generate_series(1, $3) g",
        tenant_id, tag, creators)
    for lo in range(1, supporters + 1, chunk):
        hi = min(supporters, lo + chunk - 1)
        await conn.execute(
            "insert into accounts (tenant_id, handle) select $1, 's' || $2 || '_' || g"
            " from generate_series($3::int, $4::int) g", tenant_id, tag, lo, hi)
    first_supporter = base + creators + 1

    say("things")
    # A thing is its creator's by proof (migration 0015): each owned thing's host is a
    # verified site of its creator; the others' hosts are nobody's.
    await conn.execute(
        "insert into sites (tenant_id, owner_id, url, host, verification_token, verified_at, verification_method)"
        " select $1, $2 + 1 + (g % $3), 'https://t' || $4 || '-' || g || '.example/',"
        "        't' || $4 || '-' || g || '.example', 'synthetic', now(), 'well_known'"
        "   from generate_series(2, $5, 2) g order by g",
        tenant_id, base, creators, tag, things)
    await conn.execute(
        "insert into things (tenant_id, url, title)"
        " select $1, 'https://t' || $2 || '-' || g || '.example/', 'thing ' || g"
        "   from generate_series(1, $3) g order by g",
        tenant_id, tag, things)
    first_thing = await conn.fetchval("select min(id) from things where url like $1", f"https://t{tag}-%")

    say("budgets and funds")
    external = await conn.fetchval(
        "insert into ledger_accounts (kind, tenant_id, currency) values ('external', $1, $2)"
        " on conflict do nothing returning id", tenant_id, currency) or await conn.fetchval(
        "select id from ledger_accounts where kind = 'external' and tenant_id = $1 and currency = $2",
        tenant_id, currency)
    for lo in range(0, supporters, chunk):
        hi = min(supporters, lo + chunk)
        a, b = first_supporter + lo, first_supporter + hi - 1
        await conn.execute(
            "insert into budget_changes (tenant_id, account_id, amount, currency, created_at)"
            " select $1, g, 200 + (g % 19) * 100, $2, ($3::date - interval '1 day') at time zone 'UTC'"
            "   from generate_series($4::bigint, $5::bigint) g",
            tenant_id, currency, period, a, b)
        await conn.execute(
            "insert into ledger_accounts (kind, tenant_id, currency, owner_account_id)"
            " select 'supporter', $1, $2, g from generate_series($3::bigint, $4::bigint) g",
            tenant_id, currency, a, b)
        # Journals and both sides of their entries in one statement (the entry check runs per statement).
        await conn.execute(
            "with j as (insert into journals (tenant_id, kind, idem_key)"
            "           select $1, 'topup', 'seed:' || g from generate_series($4::bigint, $5::bigint) g"
            "           returning id, split_part(idem_key, ':', 2)::bigint as owner)"
            " insert into entries (journal_id, ledger_account_id, tenant_id, amount, currency, journal_tenant_id)"
            " select j.id, x.account, $1, x.amount, $2, $1"
            "   from j join ledger_accounts la on la.kind = 'supporter' and la.owner_account_id = j.owner"
            "   cross join lateral (values (la.id, 1000 + (j.owner % 7) * 500),"
            "                              ($3::bigint, -(1000 + (j.owner % 7) * 500))) x(account, amount)",
            tenant_id, currency, external, a, b)
        say(f"funded {hi:,}")

    say("clicks")
    total = 0
    for lo in range(0, supporters, max(1, chunk // max(1, clicks_per_supporter))):
        hi = min(supporters, lo + max(1, chunk // max(1, clicks_per_supporter)))
        status = await conn.execute(
            "insert into clicks (tenant_id, supporter_id, thing_id, period, accepted_at, idempotency_key)"
            " select $1, s, $2 + ((s * 31 + k * 37) % $3), $4::date,"
            # accepted within the month in UTC, as its period says (not in the session's zone)
            "        ($4::date + ((s * 7 + k * 13) % 2000000) * interval '1 second') at time zone 'UTC', 'seed:' || k"
            "   from generate_series($5::bigint, $6::bigint) s, generate_series(0, $7 - 1) k",
            tenant_id, first_thing, things, period, first_supporter + lo, first_supporter + hi - 1,
            clicks_per_supporter)
        total += int(status.split()[-1])
        say(f"clicks {total}")
    await conn.execute(
        "insert into thing_stats (thing_id, period, clicks) select thing_id, period, count(*) from clicks"
        " where period = $1::date group by 1, 2 on conflict (thing_id, period) do update set clicks = excluded.clicks",
        period)
    return {"supporters": supporters, "things": things, "clicks": total, "first_supporter": first_supporter,
            "first_thing": first_thing}
