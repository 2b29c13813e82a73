"""The scheduler's rule: what work is due (runtime.scheduler runs it in a loop). Every
tick is idempotent, so several schedulers (or a CronJob running `--once`) may overlap
safely."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from merci import (
    click_outbox,
    clicks,
    close,
    escrow,
    fraud,
    mail,
    payouts,
    refunds,
    search,
    statements,
    stripe_events,
    subscriptions,
)
from merci.clicks import CLICK_QUEUE
from merci.config import Settings
from merci.periods import month_start, months_before, period_of
from merci.queue import DIRECTORY, MONEY, Queue

log = logging.getLogger("merci.scheduler")


async def tick(conn: asyncpg.Connection, settings: Settings, queue: Queue, now: datetime) -> list[str]:
    """Send the due jobs; returns what was sent (for logs and tests)."""
    sent: list[str] = []
    current = period_of(now)
    previous = months_before(current, 1)

    # Subscriptions count in the current month as soon as it starts.
    if await conn.fetchval(
        "select 1 from subscriptions s where s.status = 'active' and s.start_period <= $1 and s.months_used < s.months"
        " and not exists (select 1 from subscription_periods p where p.subscription_id = s.id and p.period = $1)"
        " limit 1", current):
        queue.send(subscriptions.MATERIALIZE_ACTOR, current.isoformat()[:7], queue_name=CLICK_QUEUE)
        sent.append(f"{subscriptions.MATERIALIZE_ACTOR} {current:%Y-%m}")

    # The open month's clicks, scanned for fraud every few minutes (and the month once
    # more by its close's start).
    if await fraud.scan_due(conn, period=current, now=now):
        queue.send(fraud.DETECT_ACTOR, current.isoformat()[:7], queue_name=CLICK_QUEUE)
        sent.append(f"{fraud.DETECT_ACTOR} {current:%Y-%m}")

    # Close last month once the grace period has let its late clicks drain.
    status = await conn.fetchval("select status from month_closes where period = $1", previous)
    has_clicks = await conn.fetchval("select 1 from clicks where period = $1 limit 1", previous)
    if status is None and has_clicks and now >= month_start(current) + timedelta(seconds=settings.close_grace_seconds):
        queue.send(close.CLOSE_ACTOR, previous.isoformat()[:7], close.DEFAULT_SHARDS, settings.currency,
                   settings.default_budget, queue_name=MONEY)
        sent.append(f"{close.CLOSE_ACTOR} {previous:%Y-%m}")
    elif status == "running":
        # Resume a close whose messages were lost or whose workers died: shards are idempotent.
        queue.send(close.CLOSE_ACTOR, previous.isoformat()[:7], close.DEFAULT_SHARDS, settings.currency,
                   settings.default_budget, queue_name=MONEY)
        sent.append(f"{close.CLOSE_ACTOR} {previous:%Y-%m} (resume)")

    # Directory rankings (POPULAR, TRENDING) from recent clicks, every few minutes.
    if await conn.fetchval("select coalesce(rankings_at < $1::timestamptz - interval '5 minutes', true)"
                           " from directory_state",
                           now):
        queue.send(search.RANKINGS_ACTOR, queue_name=DIRECTORY)
        sent.append(search.RANKINGS_ACTOR)

    # Escrow of still-unclaimed things goes back after the hold period.
    cutoff = months_before(current, settings.escrow_hold_months + 1)
    for row in await conn.fetch(
        "select distinct j.period from journals j join entries e on e.journal_id = j.id"
        " join ledger_accounts la on la.id = e.ledger_account_id and la.kind = 'escrow'"
        " join things t on t.id = e.thing_id and t.owner_id is null"
        " where j.kind = 'month_close' and j.period <= $1"
        " and not exists (select 1 from escrow_returns r where r.thing_id = e.thing_id and r.period = j.period)"
        " order by 1", cutoff):
        queue.send(escrow.RETURN_ACTOR, row["period"].isoformat()[:7], queue_name=MONEY)
        sent.append(f"{escrow.RETURN_ACTOR} {row['period']:%Y-%m}")

    # Escrow left on a claimed thing (claims release in their own transaction and a close
    # cannot interleave with one, so normally none; `merci audit` reports any) goes to its owner.
    for row in await conn.fetch(escrow.STRANDED_SQL):
        queue.send(escrow.RELEASE_ACTOR, row["thing_id"], queue_name=MONEY)
        sent.append(f"{escrow.RELEASE_ACTOR} {row['thing_id']}")

    # Accepted clicks whose batch the broker refused, or lost (still unstored long after it
    # was sent): sent again as the API signed them; ingestion counts each once.
    def resend(batch: list[list[Any]], signature: str, outbox_id: str) -> None:
        queue.send(clicks.INGEST_ACTOR, batch, signature, outbox_id, queue_name=CLICK_QUEUE)

    if relayed := await click_outbox.relay(conn, resend, now=now, resend_after=settings.click_resend_seconds):
        sent.append(f"{clicks.INGEST_ACTOR} x{relayed} (outbox)")

    # Click receipts the workers have settled since (their own rows answer now), old refusals.
    if purged := await clicks.purge_receipts(conn):
        log.info("forgot %d click receipts", purged)

    # Mail still unsent a while after its transaction: its message was lost or its worker died.
    for mail_id in await mail.unsent(conn, now=now):
        queue.send(mail.SEND_ACTOR, mail_id, queue_name=mail.SEND_QUEUE)
        sent.append(f"{mail.SEND_ACTOR} {mail_id}")

    # Payouts still pending after a while: their message was lost or their worker died.
    for payout_id in await payouts.stale(conn, now=now):
        queue.send(payouts.PAYOUT_ACTOR, payout_id, queue_name=payouts.PAYOUT_QUEUE)
        sent.append(f"{payouts.PAYOUT_ACTOR} {payout_id}")

    # Stripe's events not applied a while after they came (a lost message, or one about a
    # payment not recorded yet), and refunds not yet sent to Stripe.
    for event_id in await stripe_events.unprocessed(conn):
        queue.send(stripe_events.EVENT_ACTOR, event_id, queue_name=stripe_events.EVENT_QUEUE)
        sent.append(f"{stripe_events.EVENT_ACTOR} {event_id}")
    # A closed month's statements, mailed once to everyone it charged or paid.
    for period in await statements.months_to_mail(conn):
        queue.send(statements.MAIL_ACTOR, period.isoformat()[:7], queue_name=statements.MAIL_QUEUE)
        sent.append(f"{statements.MAIL_ACTOR} {period:%Y-%m}")
    for refund_id in await refunds.pending(conn):
        queue.send(refunds.REFUND_ACTOR, refund_id, queue_name=refunds.REFUND_QUEUE)
        sent.append(f"{refunds.REFUND_ACTOR} {refund_id}")
    return sent
