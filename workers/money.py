"""The `money` queue: the month close (sharded), escrow release and return, payouts,
Stripe's events and refunds."""

from __future__ import annotations

import asyncpg
import dramatiq

from merci import close, escrow, fraud, payouts, refunds, statements, stripe_events
from merci.errors import UserError
from merci.payments import PayoutProvider, PayoutRefused, Transfer, payout_provider_for
from merci.payout_methods import StripePayoutProvider
from merci.periods import parse_period
from merci.queue import MONEY
from merci.stripe_api import for_settings
from workers.runtime import run


@dramatiq.actor(actor_name=close.CLOSE_ACTOR, queue_name=MONEY, max_retries=20)
def close_month(period: str, shards: int, currency: str, default_budget: int) -> None:
    """Start the close (its month screened for fraud once more), then fan out one message per shard."""
    from workers import settings

    p = parse_period(period)
    screen = fraud.Rules.of(settings) if settings.fraud_screen_at_close else None

    async def body(pool: asyncpg.Pool) -> int:
        async with pool.acquire() as conn:
            started = await close.start(conn, period=p, shards=shards, currency=currency,
                                        default_budget=default_budget, screen=screen)
            done = {r["shard"] for r in await conn.fetch(
                "select shard from month_close_shards where period = $1", p)}
        for shard in range(started["shards"]):
            if shard not in done:
                close_shard.send(period, shard)
        return int(started["shards"])

    run(body)


@dramatiq.actor(actor_name=close.SHARD_ACTOR, queue_name=MONEY, max_retries=20, time_limit=3_600_000)
def close_shard(period: str, shard: int) -> None:
    p = parse_period(period)

    async def body(pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            await close.close_shard(conn, period=p, shard=shard)
            await close.finish(conn, period=p)  # the last shard to finish completes the close

    run(body)


@dramatiq.actor(actor_name=escrow.RELEASE_ACTOR, queue_name=MONEY, max_retries=20)
def release_escrow(thing_id: int) -> None:
    async def body(pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            await escrow.release(conn, thing_id=thing_id)

    run(body)


@dramatiq.actor(actor_name=escrow.RETURN_ACTOR, queue_name=MONEY, max_retries=20)
def return_escrow(period: str) -> None:
    async def body(pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            await escrow.return_due(conn, period=parse_period(period))

    run(body)


@dramatiq.actor(actor_name=payouts.PAYOUT_ACTOR, queue_name=payouts.PAYOUT_QUEUE, max_retries=20)
def send_payout(payout_id: int) -> None:
    """Send one payout through its provider; a provider's refusal fails it, anything else retries."""
    from workers import settings

    async def body(pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            name = await conn.fetchval("select provider from payouts where id = $1", payout_id)
            if name is None or name == "sepa":  # SEPA: sent when the operator's batch is confirmed (merci.sepa)
                return
            provider: PayoutProvider
            if name == "stripe":
                api = for_settings(settings)
                provider = (_Refusing("Stripe is not configured here") if api is None
                            else StripePayoutProvider(api, conn))
            else:
                try:
                    provider = payout_provider_for(name, env=settings.env)
                except UserError as err:
                    provider = _Refusing(err.message)
            await payouts.send(conn, payout_id=payout_id, provider=provider)

    run(body)


@dramatiq.actor(actor_name=stripe_events.EVENT_ACTOR, queue_name=stripe_events.EVENT_QUEUE, max_retries=20)
def process_stripe_event(event_id: str) -> None:
    """Apply one of Stripe's stored events, once (merci.stripe_events)."""
    from workers import settings

    async def body(pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            await stripe_events.process(conn, settings, event_id=event_id, api=for_settings(settings))

    run(body)


@dramatiq.actor(actor_name=refunds.REFUND_ACTOR, queue_name=refunds.REFUND_QUEUE, max_retries=20)
def send_refund(refund_id: int) -> None:
    """Carry out one refund: the journal, then Stripe's refund, keyed on the row (merci.refunds)."""
    from workers import settings

    async def body(pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn:
            await refunds.send(conn, refund_id=refund_id, stripe=for_settings(settings))

    run(body)


@dramatiq.actor(actor_name=statements.MAIL_ACTOR, queue_name=statements.MAIL_QUEUE, max_retries=20)
def mail_statements(period: str) -> None:
    """Mail a closed month's statements, once each; then send them (merci.statements)."""
    from workers import settings

    async def body(pool: asyncpg.Pool) -> list[int]:
        async with pool.acquire() as conn:
            return await statements.mail_month(conn, settings, period=parse_period(period))

    from workers.mail import send

    for mail_id in run(body):  # after commit: the mails are in the outbox, the scheduler resends any lost
        send.send(mail_id)


class _Refusing:
    """A payout whose provider is not available here: it fails, with the reason."""

    def __init__(self, reason: str) -> None:
        self.name, self.reason = "unavailable", reason

    async def send(self, **_: object) -> Transfer:
        raise PayoutRefused(self.reason)
