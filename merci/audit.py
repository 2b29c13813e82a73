"""`merci audit`: the ledger's invariants, each a query returning its violations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

# name -> (what it proves, SQL returning at most a few violating rows)
CHECKS: dict[str, tuple[str, str]] = {
    "journals_balance": (
        "every journal's entries sum to zero in each currency",
        "select journal_id, currency, sum(amount) as total from entries"
        " group by journal_id, currency having sum(amount) <> 0 limit 5",
    ),
    "journals_not_empty": (
        "every journal has entries",
        "select j.id from journals j where not exists (select 1 from entries e where e.journal_id = j.id)"
        " and j.kind <> 'month_close' limit 5",
    ),
    "no_negative_balance": (
        "no balance is negative (outside accounts aside)",
        "select la.id, la.kind, la.owner_account_id, la.thing_id, sum(e.amount) as balance"
        "  from ledger_accounts la join entries e on e.ledger_account_id = la.id"
        " where la.kind not in ('external', 'payout', 'provider_fee', 'platform_cost')"
        " group by la.id having sum(e.amount) < 0 limit 5",
    ),
    "entry_currency_matches_account": (
        "entries are in their account's currency and tenant",
        "select e.id from entries e join ledger_accounts la on la.id = e.ledger_account_id"
        " where e.currency <> la.currency or e.tenant_id <> la.tenant_id limit 5",
    ),
    "entry_journal_tenant": (
        "entries carry their journal's tenant and name existing things",
        "select e.id from entries e join journals j on j.id = e.journal_id"
        " where e.journal_tenant_id <> j.tenant_id"
        "    or (e.thing_id is not null and not exists (select 1 from things t where t.id = e.thing_id)) limit 5",
    ),
    "closed_months_conserve": (
        "each closed month: charged budgets = shares + fees",
        "select j.period, -sum(e.amount) filter (where la.kind = 'supporter') as charged,"
        "       sum(e.amount) filter (where la.kind <> 'supporter') as paid"
        "  from journals j join entries e on e.journal_id = j.id join ledger_accounts la on la.id = e.ledger_account_id"
        " where j.kind = 'month_close' group by j.period"
        " having coalesce(-sum(e.amount) filter (where la.kind = 'supporter'), 0)"
        "   <> coalesce(sum(e.amount) filter (where la.kind <> 'supporter'), 0) limit 5",
    ),
    "one_close_journal_per_supporter": (
        "a supporter is charged at most once per month",
        "select j.period, e_la.owner_account_id, count(distinct j.id)"
        "  from journals j join entries e on e.journal_id = j.id"
        "  join ledger_accounts e_la on e_la.id = e.ledger_account_id and e_la.kind = 'supporter'"
        " where j.kind = 'month_close' group by 1, 2 having count(distinct j.id) > 1 limit 5",
    ),
    "equal_shares": (
        "within a supporter's month, shares differ by at most one cent",
        "select j.id, min(e.amount), max(e.amount) from journals j join entries e on e.journal_id = j.id"
        " where j.kind = 'month_close' and e.thing_id is not null group by j.id"
        " having max(e.amount) - min(e.amount) > 1 limit 5",
    ),
    "clicks_unique": (
        "clicks are unique per supporter, thing and month",
        "select supporter_id, thing_id, period, count(*) from clicks group by 1, 2, 3 having count(*) > 1 limit 5",
    ),
    "closes_complete": (
        "every finished close has all its shards",
        "select m.period from month_closes m where m.status = 'done'"
        " and (select count(*) from month_close_shards s where s.period = m.period) <> m.shards limit 5",
    ),
    "no_failed_close": (
        "no month close failed its self-check",
        "select period, error from month_closes where status = 'failed' limit 5",
    ),
    "owned_by_proof": (
        "every thing belongs to the creator whose verified site covers it (the longest scope), or to nobody",
        "select t.id, t.owner_id, o.owner_id as scope_owner from things t"
        "  left join lateral (select s.owner_id from sites s"
        "                      where s.verified_scope = any(merci_scope_prefixes(t.canon))"
        "                      order by length(s.verified_scope) desc, s.verified_at, s.id limit 1) o on true"
        " where t.owner_id is distinct from o.owner_id limit 5",
    ),
    "claimed_escrow_released": (
        "no escrow of a claimed thing holds cents (a claim releases it; the scheduler sweeps what is left)",
        "select la.thing_id, sum(e.amount) as escrow from ledger_accounts la"
        "  join things t on t.id = la.thing_id and t.owner_id is not null"
        "  join entries e on e.ledger_account_id = la.id"
        " where la.kind = 'escrow' group by la.thing_id having sum(e.amount) > 0 limit 5",
    ),
    "no_own_share": (
        "nobody is paid a month-close share for their own thing",
        "select j.id as journal_id, e.thing_id, sl.owner_account_id as supporter"
        "  from journals j"
        "  join entries se on se.journal_id = j.id"
        "  join ledger_accounts sl on sl.id = se.ledger_account_id and sl.kind = 'supporter'"
        "  join entries e on e.journal_id = j.id and e.thing_id is not null and e.amount > 0"
        "  join ledger_accounts la on la.id = e.ledger_account_id and la.kind = 'creator'"
        " where j.kind = 'month_close' and la.owner_account_id = sl.owner_account_id limit 5",
    ),
    "held_clicks_unpaid": (
        "a click held for review (merci.fraud) was given no share in its month's close",
        "select f.click_id, f.supporter_id, f.thing_id, f.period, e.amount"
        "  from click_flags f"
        "  join journals j on j.idem_key = 'close:' || f.period::date::text || ':' || f.supporter_id"
        "  join entries e on e.journal_id = j.id and e.thing_id = f.thing_id and e.amount > 0"
        " where f.holds limit 5",
    ),
    "payouts_posted": (
        "every sent payout moved exactly its amount from the creator's earnings to the outside world",
        "select p.id, p.amount, x.paid, x.taken from payouts p left join lateral ("
        "  select sum(e.amount) filter (where la.kind = 'payout' and la.owner_account_id = p.account_id) as paid,"
        "         -sum(e.amount) filter (where la.kind = 'creator' and la.owner_account_id = p.account_id) as taken"
        "    from entries e join ledger_accounts la on la.id = e.ledger_account_id"
        "   where e.journal_id = p.journal_id) x on true"
        " where p.status = 'sent' and (x.paid is distinct from p.amount or x.taken is distinct from p.amount)"
        " limit 5",
    ),
    "payouts_covered": (
        "pending payouts never reserve more than the creator's earnings",
        "select p.account_id, p.currency, sum(p.amount) as reserved from payouts p where p.status = 'pending'"
        " group by 1, 2 having sum(p.amount) > coalesce((select sum(e.amount) from ledger_accounts la"
        "   join entries e on e.ledger_account_id = la.id where la.kind = 'creator'"
        "    and la.owner_account_id = p.account_id and la.currency = p.currency), 0) limit 5",
    ),
    **{f"{kind}_shape": (
        f"every {kind} journal moves money only {what}",
        "select j.id, la.kind, e.amount from journals j join entries e on e.journal_id = j.id"
        "  join ledger_accounts la on la.id = e.ledger_account_id"
        f" where j.kind = '{kind}' and not ({allowed}) limit 5",
    ) for kind, what, allowed in (
        ("topup", "from the outside world into a supporter's balance",
         "(la.kind = 'external' and e.amount < 0) or (la.kind = 'supporter' and e.amount > 0)"),
        ("provider_fee", "from the platform's pocket to a payment provider",
         "(la.kind = 'platform_cost' and e.amount < 0) or (la.kind = 'provider_fee' and e.amount > 0)"),
        ("refund", "from a supporter's balance to the outside world",
         "(la.kind = 'supporter' and e.amount < 0) or (la.kind = 'external' and e.amount > 0)"),
        ("refund_reversal", "from the outside world back into a supporter's balance",
         "(la.kind = 'external' and e.amount < 0) or (la.kind = 'supporter' and e.amount > 0)"),
        ("dispute_freeze", "from a supporter's balance into their frozen account",
         "(la.kind = 'supporter' and e.amount < 0) or (la.kind = 'frozen' and e.amount > 0)"),
        ("dispute_won", "from a frozen account back into its supporter's balance",
         "(la.kind = 'frozen' and e.amount < 0) or (la.kind = 'supporter' and e.amount > 0)"),
        ("dispute_lost", "from the frozen account and the platform's pocket to the card holder",
         "(la.kind in ('frozen', 'platform_cost') and e.amount < 0) or (la.kind = 'external' and e.amount > 0)"),
    )},
    "topups_credited": (
        "a card top-up is credited once, exactly its amount, to its supporter, and only when paid",
        "select t.id, t.status, t.amount, x.credited from topups t left join lateral ("
        "  select sum(e.amount) as credited from journals j join entries e on e.journal_id = j.id"
        "    join ledger_accounts la on la.id = e.ledger_account_id"
        "   where j.idem_key = 'topup:stripe:' || t.id and la.kind = 'supporter' and la.owner_account_id = t.account_id"
        ") x on true where (t.status = 'succeeded') <> (x.credited is not null)"
        "    or (x.credited is not null and x.credited <> t.amount)"
        "    or (t.journal_id is not null"
        "        and t.journal_id <> (select id from journals where idem_key = 'topup:stripe:' || t.id))"
        " limit 5",
    ),
    "topup_fees_recorded": (
        "a top-up's recorded fee is the provider_fee journal posted for it",
        "select t.id, t.fee, x.posted from topups t left join lateral ("
        "  select sum(e.amount) as posted from journals j join entries e on e.journal_id = j.id"
        "    join ledger_accounts la on la.id = e.ledger_account_id and la.kind = 'provider_fee'"
        "   where j.idem_key = 'fee:topup:' || t.id) x on true"
        " where t.fee is distinct from x.posted and not (t.fee is null and x.posted is null) limit 5",
    ),
    "refunds_posted": (
        "a refund took exactly its amount from its supporter once (and a failed one gave it back), and the"
        " refunds of a top-up never exceed it",
        "select r.id, r.status, r.amount, x.taken, x.given from refunds r left join lateral ("
        "  select -sum(e.amount) filter (where j.kind = 'refund') as taken,"
        "          sum(e.amount) filter (where j.kind = 'refund_reversal') as given"
        "    from journals j join entries e on e.journal_id = j.id"
        "    join ledger_accounts la on la.id = e.ledger_account_id"
        "   where j.idem_key in ('refund:' || r.id, 'refund_reversal:' || r.id) and la.kind = 'supporter'"
        "     and la.owner_account_id = r.account_id) x on true"
        " where (r.status in ('pending', 'succeeded') and (x.taken is distinct from r.amount or x.given is not null))"
        "    or (r.status = 'requested' and (x.taken is not null or x.given is not null))"
        "    or (r.status = 'failed' and x.taken is distinct from x.given)"
        "    or (select sum(o.amount) from refunds o where o.topup_id = r.topup_id and o.status <> 'failed')"
        "       > (select t.amount from topups t where t.id = r.topup_id)"
        " limit 5",
    ),
    "disputes_conserve": (
        "a supporter's frozen money is what their open disputes froze; a lost dispute paid its whole amount out",
        "select la.owner_account_id, sum(e.amount) as frozen, (select coalesce(sum(d.frozen), 0) from disputes d"
        "   where d.account_id = la.owner_account_id and d.status = 'open') as held"
        "  from ledger_accounts la join entries e on e.ledger_account_id = la.id where la.kind = 'frozen'"
        " group by la.owner_account_id having sum(e.amount) <> (select coalesce(sum(d.frozen), 0) from disputes d"
        "   where d.account_id = la.owner_account_id and d.status = 'open')"
        " union all "
        "select d.account_id, d.amount, sum(e.amount) from disputes d join journals j on j.id = d.close_journal_id"
        "  join entries e on e.journal_id = j.id join ledger_accounts la on la.id = e.ledger_account_id"
        " where d.status = 'lost' and la.kind = 'external' group by d.account_id, d.id, d.amount"
        " having sum(e.amount) <> d.amount limit 5",
    ),
}


@dataclass(frozen=True)
class Violation:
    check: str
    description: str
    rows: list[dict[str, object]]

    def __str__(self) -> str:
        sample = "; ".join(", ".join(f"{k}={v}" for k, v in r.items()) for r in self.rows[:3])
        return f"{self.check}: violated ({self.description}): {sample}"


async def audit(conn: asyncpg.Connection, *, on_check: Callable[[str], None] | None = None) -> list[Violation]:
    """Run every check (as merci_system); an empty list means the ledger is sound."""
    violations = []
    for name, (description, sql) in CHECKS.items():
        if on_check:
            on_check(name)
        rows = await conn.fetch(sql)
        if rows:
            violations.append(Violation(name, description, [dict(r) for r in rows]))
    return violations


async def imbalance(conn: asyncpg.Connection) -> int:
    """Sum of all entries: 0 unless a cent was created or destroyed (a metric)."""
    value = await conn.fetchval("select coalesce(sum(amount), 0)::bigint from entries")
    return int(value)
