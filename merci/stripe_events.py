"""Stripe's webhooks: received once, applied once, in whatever order they come.

`receive` (the API's /webhooks/stripe, as merci_app): the library's own verifier checks
the signature and the timestamp's tolerance (STRIPE_WEBHOOK_TOLERANCE, 300 s: an older
event is a replay), then the event is stored, keyed on its id: Stripe's redelivery or an
attacker's replay of a fresh one stores nothing new. Refused (400, nothing stored): no or
a wrong signature, a stale timestamp, a body that is not an event. Stored and answered
200: any event of a well-formed shape, known type or not.

`process` (a worker, as merci_system): verifies the stored signature again (a row written
by anything but the webhook moves no money), applies the event, and marks it processed
with its outcome, in one transaction with the money it moved. Every event ends logged
with what it did, unknown types as "ignored". Out of order: each handler acts on the
state it finds (a payment's failure after its success changes nothing; a dispute's close
before its opening opens it first); an event about a payment Merci has not recorded yet
waits and is tried again (the scheduler), up to MAX_ATTEMPTS.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import asyncpg
import stripe

from merci import disputes, payout_methods, refunds, topups
from merci.config import Settings
from merci.queue import MONEY
from merci.stripe_api import Stripe

log = logging.getLogger("merci.stripe")

EVENT_ACTOR = "stripe.process_event"
EVENT_QUEUE = MONEY
MAX_ATTEMPTS = 20
RETRY_AFTER_SECONDS = 60


class BadWebhook(Exception):
    """Refused at the door: answered 400, nothing stored."""


def verify(payload: bytes, signature: str | None, secret: str, *, tolerance: int | None) -> dict[str, Any]:
    """The event, if Stripe signed `payload` (with the library's verifier), within the tolerance."""
    if not secret:
        raise BadWebhook("no webhook secret is configured (STRIPE_WEBHOOK_SECRET)")
    try:
        stripe.WebhookSignature.verify_header(payload, signature, secret, tolerance)
    except stripe.SignatureVerificationError as err:
        raise BadWebhook(f"signature: {err}") from err
    except UnicodeDecodeError as err:
        raise BadWebhook("the body is not UTF-8") from err
    try:
        event = json.loads(payload)
    except ValueError as err:
        raise BadWebhook("the body is not JSON") from err
    if not (isinstance(event, dict) and event.get("object") == "event" and isinstance(event.get("id"), str)
            and event["id"].startswith("evt_") and isinstance(event.get("type"), str)
            and isinstance(event.get("created"), int) and isinstance(event.get("data"), dict)
            and isinstance(event["data"].get("object"), dict)):
        raise BadWebhook("the body is not a Stripe event")
    return event


async def receive(conn: asyncpg.Connection, settings: Settings, *, payload: bytes,
                  signature: str | None) -> tuple[str, bool]:
    """Verify and store an event (as merci_app); (its id, whether it is new)."""
    event = verify(payload, signature, settings.stripe_webhook_secret, tolerance=settings.stripe_webhook_tolerance)
    status = await conn.execute(
        "insert into stripe_events (id, type, livemode, created, payload, signature)"
        " values ($1, $2, $3, $4, $5, $6) on conflict do nothing",  # (no target: merci_app reads none)
        event["id"], event["type"][:100], bool(event.get("livemode")),
        datetime.fromtimestamp(event["created"], UTC), payload.decode(), signature or "")
    return event["id"], status.endswith(" 1")


async def process(conn: asyncpg.Connection, settings: Settings, *, event_id: str, api: Stripe | None) -> str:
    """Apply one stored event (as merci_system); returns its outcome. Idempotent."""
    async with conn.transaction():
        row = await conn.fetchrow("select id, type, payload, signature, processed_at, outcome from stripe_events"
                                  " where id = $1 for update", event_id)
        if row is None:
            return "missing"
        if row["processed_at"] is not None:
            return str(row["outcome"])
        try:
            event = verify(row["payload"].encode(), row["signature"], settings.stripe_webhook_secret, tolerance=None)
        except BadWebhook as err:
            return await _done(conn, event_id, row["type"], f"refused: {err}")
        if event["id"] != event_id:
            return await _done(conn, event_id, row["type"], "refused: the body names another event")
        try:
            outcome, fee_for = await _apply(conn, event)
        except disputes.NotYet as err:
            attempts = await conn.fetchval("update stripe_events set attempts = attempts + 1 where id = $1"
                                           " returning attempts", event_id)
            if attempts >= MAX_ATTEMPTS:
                return await _done(conn, event_id, row["type"], f"gave up: {err}")
            log.info("stripe event %s %s: waits (%s)", event_id, row["type"], err)
            return "waiting"
        if fee_for is None:
            return await _done(conn, event_id, row["type"], outcome)
    # The fee Stripe kept: read from Stripe outside the transaction (a slow answer holds no
    # lock); should it fail, the event stays unprocessed and is tried again, and the
    # credit above says "already credited".
    fee = None
    if api is not None:
        pi = await conn.fetchval("select payment_intent_id from topups where id = $1", fee_for)
        if pi:
            fee = topups.fee_of(await api.retrieve_payment_intent(pi))
    async with conn.transaction():
        if fee:
            await topups.record_fee(conn, topup_id=fee_for, fee=fee)
        return await _done(conn, event_id, row["type"], outcome + (f", fee {fee}" if fee else ""))


async def _done(conn: asyncpg.Connection, event_id: str, kind: str, outcome: str) -> str:
    await conn.execute("update stripe_events set processed_at = now(), outcome = $2, attempts = attempts + 1"
                       " where id = $1", event_id, outcome[:500])
    log.info("stripe event %s %s: %s", event_id, kind, outcome)
    return outcome


def _topup_id(obj: dict[str, Any]) -> int | None:
    raw = (obj.get("metadata") or {}).get("merci_topup_id") or obj.get("client_reference_id")
    return int(raw) if isinstance(raw, str) and raw.isdigit() and len(raw) < 19 else None


async def _apply(conn: asyncpg.Connection, event: dict[str, Any]) -> tuple[str, int | None]:
    """(outcome, the top-up whose fee to record now or None)."""
    kind, obj = event["type"], event["data"]["object"]
    if kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
        tid = _topup_id(obj)
        if tid is None:
            return "ignored: not a Merci top-up", None
        if obj.get("payment_status") != "paid":
            return f"payment {obj.get('payment_status')}: nothing credited yet", None
        out = await topups.credit(conn, topup_id=tid, amount=int(obj.get("amount_total") or 0),
                                  currency=str(obj.get("currency") or ""), payment_intent=obj.get("payment_intent"),
                                  session_id=obj.get("id"))
        return out, (tid if out == "credited" else None)
    if kind == "payment_intent.succeeded":
        tid = _topup_id(obj)
        if tid is None:
            return "ignored: not a Merci top-up", None
        out = await topups.credit(conn, topup_id=tid, amount=int(obj.get("amount_received") or 0),
                                  currency=str(obj.get("currency") or ""), payment_intent=obj.get("id"),
                                  session_id=None)
        return out, (tid if out == "credited" else None)
    if kind in ("payment_intent.payment_failed", "checkout.session.async_payment_failed",
                "checkout.session.expired"):
        tid = _topup_id(obj)
        if tid is None:
            return "ignored: not a Merci top-up", None
        status = "expired" if kind == "checkout.session.expired" else "failed"
        error = (obj.get("last_payment_error") or {}).get("message") if status == "failed" else None
        return await topups.fail(conn, topup_id=tid, status=status, reason=str(error or kind)), None
    if kind == "charge.dispute.created":
        return await disputes.opened(conn, obj), None
    if kind == "charge.dispute.closed":
        return await disputes.closed(conn, obj), None
    if kind in ("refund.updated", "refund.failed", "charge.refund.updated"):
        return await refunds.updated(conn, obj), None
    if kind == "account.updated":
        return await payout_methods.account_updated(conn, obj), None
    return "ignored: a type Merci does not handle", None


async def unprocessed(conn: asyncpg.Connection) -> list[str]:
    """Events stored but not applied a while after (a lost message, one that waits)."""
    return [r["id"] for r in await conn.fetch(
        "select id from stripe_events where processed_at is null"
        " and received_at < now() - make_interval(secs => $1) order by received_at limit 1000",
        RETRY_AFTER_SECONDS)]
