"""Webhooks to partners: endpoints, signed deliveries, retries, logs and replays.

Events are written by triggers (sql/0006_partners.sql) in the transaction that made
the change, so an event exists exactly when its change committed. The workers fan
each event out into one delivery per subscribed endpoint (`dispatch`) and POST it
(`deliver`), signed with the endpoint's own secret: HMAC-SHA256 over
"<timestamp>.<body>". A failed attempt is logged and raises in the actor, so
Dramatiq retries it with backoff. Delivery is at least once: receivers dedupe on
the `Merci-Event-Id` header, which a retry or a replay repeats.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from merci import fetch
from merci.errors import Checks, UserError
from merci.fetch import FetchError, FetchPolicy, address_problem
from merci.ids import to_global
from merci.paging import Keyset
from merci.queue import WEBHOOKS

EVENTS = ("click.accepted", "month.closed", "payout.sent")
DELIVER_ACTOR = "webhooks.deliver"
GIVE_UP_ACTOR = "webhooks.give_up"
WEBHOOK_QUEUE = WEBHOOKS
MAX_ENDPOINTS = 20  # per tenant
TOLERANCE_SECONDS = 300  # how old a signature receivers should accept
TIMEOUT_SECONDS = 10.0
USER_AGENT = "Merci-Webhooks/1.0"
ENDPOINT_COLUMNS = "id, url, events, description, active, created_at, disabled_at"
DELIVERY_COLUMNS = ("d.id, d.event_id, d.endpoint_id, d.replay_of, d.status, d.attempts, d.created_at,"
                    " d.last_attempt_at, d.delivered_at, d.last_error, e.type, e.payload, e.created_at as event_at")


def endpoints() -> Keyset:
    """The tenant's webhook endpoints (RLS: the caller's tenant), oldest first."""
    return Keyset(f"select {ENDPOINT_COLUMNS} from webhook_endpoints where true", (), descending=False)


def deliveries(*, endpoint_id: int, status: str | None) -> Keyset:
    """An endpoint's deliveries, newest first, of one status or all."""
    return Keyset(f"select {DELIVERY_COLUMNS} from webhook_deliveries d join webhook_events e on e.id = d.event_id"
                  " where d.endpoint_id = $1 and ($2::text is null or d.status = $2)", (endpoint_id, status),
                  key="d.id")


async def endpoints_by_id(conn: asyncpg.Connection, *, endpoint_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The tenant's endpoints among `endpoint_ids` (RLS), by id; never their secrets (the
    API's role cannot read that column)."""
    rows = await conn.fetch(f"select {ENDPOINT_COLUMNS} from webhook_endpoints where id = any($1::bigint[])",
                            endpoint_ids)
    return {r["id"]: dict(r) for r in rows}


async def delivery(conn: asyncpg.Connection, *, delivery_id: int) -> dict[str, Any] | None:
    """A delivery with its event (RLS: the caller's tenant's deliveries only)."""
    row = await conn.fetchrow(f"select {DELIVERY_COLUMNS} from webhook_deliveries d"
                              " join webhook_events e on e.id = d.event_id where d.id = $1", delivery_id)
    return None if row is None else dict(row)


async def attempts(conn: asyncpg.Connection, *, delivery_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Every attempt of each delivery, oldest first, by delivery (one statement for a page of them)."""
    rows = await conn.fetch("select delivery_id, attempt, at, status_code, error, duration_ms from webhook_attempts"
                            " where delivery_id = any($1::bigint[]) order by id", delivery_ids)
    found: dict[int, list[dict[str, Any]]] = {i: [] for i in delivery_ids}
    for r in rows:
        attempt = dict(r)
        found[attempt.pop("delivery_id")].append(attempt)
    return found


# ---------------------------------------------------------------- signatures


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `Merci-Signature` header: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.

    The timestamp is signed with the body, so a captured request cannot be replayed
    later than the receiver's tolerance.
    """
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, *, now: float | None = None,
           tolerance: int = TOLERANCE_SECONDS) -> bool:
    """What a receiver does (documented for partners; used by the tests)."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, v) for v in fields.get("v1", []))


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


# ---------------------------------------------------------------- endpoints (API, as merci_app)


def check_url(raw: str, *, allow_loopback: bool = False) -> str:
    url = raw.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as exc:
        raise UserError("INVALID_URL", "not a valid http(s) URL", "url") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2048:
        raise UserError("INVALID_URL", "a webhook URL is an absolute http(s) URL", "url")
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise UserError("INVALID_URL", "a webhook URL has no credentials and no fragment", "url")
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        literal = None
    if literal is not None and address_problem(literal, allow_loopback=allow_loopback) is not None:
        raise UserError("FORBIDDEN_ADDRESS", "webhooks are sent to public addresses only", "url")
    return url


def check_events(events: list[str]) -> list[str]:
    unknown = sorted(set(events) - set(EVENTS))
    if unknown:
        raise UserError("UNKNOWN_EVENT", f"unknown events: {', '.join(unknown)}; known: {', '.join(EVENTS)}",
                        "events")
    if not events:
        raise UserError("NO_EVENT", "subscribe to at least one event", "events")
    return sorted(set(events))


async def create_endpoint(conn: asyncpg.Connection, *, tenant_id: int, url: str, events: list[str],
                          description: str = "", allow_loopback: bool = False) -> tuple[int, str]:
    """Returns (endpoint id, signing secret). The secret is shown once."""
    checks = Checks()
    url = checks(check_url, url, allow_loopback=allow_loopback)
    events = checks(check_events, events)
    if len(description) > 200:
        checks.refuse(UserError("INVALID_DESCRIPTION", "a description has at most 200 characters", "description"))
    checks.done()
    count = await conn.fetchval("select count(*) from webhook_endpoints where tenant_id = $1 and active", tenant_id)
    if count >= MAX_ENDPOINTS:
        raise UserError("TOO_MANY_ENDPOINTS", f"at most {MAX_ENDPOINTS} active endpoints per tenant", None)
    secret = new_secret()
    endpoint_id: int = await conn.fetchval(
        "insert into webhook_endpoints (tenant_id, url, events, secret, description) values ($1, $2, $3, $4, $5)"
        " returning id", tenant_id, url, events, secret, description.strip())
    return endpoint_id, secret


def check_changes(*, url: str | None, events: list[str] | None,
                  allow_loopback: bool = False) -> tuple[str | None, list[str] | None]:
    """An endpoint's new URL and events (None: unchanged), checked together."""
    checks = Checks()
    if url is not None:
        url = checks(check_url, url, allow_loopback=allow_loopback)
    if events is not None:
        events = checks(check_events, events)
    checks.done()
    return url, events


async def update_endpoint(conn: asyncpg.Connection, *, endpoint_id: int, url: str | None = None,
                          events: list[str] | None = None, active: bool | None = None,
                          allow_loopback: bool = False) -> None:
    url, events = check_changes(url=url, events=events, allow_loopback=allow_loopback)
    status = await conn.execute(
        "update webhook_endpoints set url = coalesce($2, url), events = coalesce($3, events),"
        " active = coalesce($4, active),"
        " disabled_at = case when $4 is null then disabled_at when $4 then null else now() end where id = $1",
        endpoint_id, url, events, active)
    if status != "UPDATE 1":
        raise UserError("NOT_FOUND", "no such webhook endpoint", "id")


async def rotate_secret(conn: asyncpg.Connection, *, endpoint_id: int) -> str:
    secret = new_secret()
    status = await conn.execute("update webhook_endpoints set secret = $2 where id = $1", endpoint_id, secret)
    if status != "UPDATE 1":
        raise UserError("NOT_FOUND", "no such webhook endpoint", "id")
    return secret


async def replay(conn: asyncpg.Connection, *, delivery_id: int) -> int:
    """A new delivery of a delivery's event to the same endpoint (same event id)."""
    row = await conn.fetchrow(
        "select d.tenant_id, d.event_id, d.endpoint_id, e.active from webhook_deliveries d"
        " join webhook_endpoints e on e.id = d.endpoint_id where d.id = $1", delivery_id)
    if row is None:
        raise UserError("NOT_FOUND", "no such webhook delivery", "id")
    if not row["active"]:
        raise UserError("ENDPOINT_DISABLED", "enable the endpoint before replaying to it", "id")
    new_id: int = await conn.fetchval(
        "insert into webhook_deliveries (tenant_id, event_id, endpoint_id, replay_of) values ($1, $2, $3, $4)"
        " returning id", row["tenant_id"], row["event_id"], row["endpoint_id"], delivery_id)
    return new_id


# ---------------------------------------------------------------- the workers' side (as merci_system)


DISPATCH_SQL = """
with ev as (
    select id, tenant_id, type from webhook_events where dispatched_at is null
     order by id limit $1 for update skip locked
),
-- Runs although nothing reads it: a data-modifying WITH always runs to completion.
marked as (
    update webhook_events w set dispatched_at = now() from ev where w.id = ev.id
),
created as (
    insert into webhook_deliveries (tenant_id, event_id, endpoint_id)
    select ev.tenant_id, ev.id, ep.id from ev
      join webhook_endpoints ep on ep.tenant_id = ev.tenant_id and ep.active and ev.type = any(ep.events)
     order by ev.id, ep.id
    on conflict do nothing
    returning id
)
select id from created
"""


async def dispatch(conn: asyncpg.Connection, *, limit: int = 500) -> list[int]:
    """Turn new events into deliveries; returns the deliveries to enqueue."""
    async with conn.transaction():
        rows = await conn.fetch(DISPATCH_SQL, limit)
    return [r["id"] for r in rows]


async def unsent(conn: asyncpg.Connection, *, older_than_seconds: float) -> list[int]:
    """Deliveries never handed to the broker (a crash between commit and send)."""
    rows = await conn.fetch(
        "select id from webhook_deliveries where enqueued_at is null and status = 'pending'"
        " and created_at < now() - make_interval(secs => $1) order by id limit 500", older_than_seconds)
    return [r["id"] for r in rows]


async def mark_enqueued(conn: asyncpg.Connection, ids: list[int]) -> None:
    await conn.execute("update webhook_deliveries set enqueued_at = now() where id = any($1::bigint[])", ids)


def render(event: dict[str, Any]) -> bytes:
    """The body partners receive: public ids, camelCase, like the GraphQL API."""
    p = event["payload"]
    data: dict[str, Any]
    if event["type"] == "click.accepted":
        data = {"thing": {"id": to_global("Thing", p["thing_id"]), "url": p["url"]}, "period": p["period"],
                "acceptedAt": p["accepted_at"], "source": p["source"].upper()}
        if p.get("supporter_id") is not None:
            data["supporter"] = {"id": to_global("Account", p["supporter_id"])}
        if p.get("idempotency_key") is not None:
            data["idempotencyKey"] = p["idempotency_key"]
    elif event["type"] == "payout.sent":
        data = {"creator": {"id": to_global("Creator", p["creator_id"])} if p.get("creator_id") else None,
                "amount": {"amount": p["amount"], "currency": p["currency"]}}
    else:
        data = dict(p)
    created: datetime = event["created_at"]
    envelope = {"id": to_global("WebhookEvent", event["id"]), "type": event["type"],
                "createdAt": created.isoformat(), "data": data}
    return json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class Outcome:
    status: str  # delivered | retry | failed | skipped
    error: str | None = None


async def deliver(conn: asyncpg.Connection, *, delivery_id: int, policy: FetchPolicy,
                  timeout: float = TIMEOUT_SECONDS) -> Outcome:
    """One attempt. The delivery's row stays locked during the POST, so two copies of
    the same message never post at once; a delivered one is never posted again.

    A copy finding the row locked waits (never skips: the lock may be a pump's brief
    bookkeeping, and skipping would drop the delivery); a copy that waited too long
    retries later."""
    async with conn.transaction():
        await conn.execute(f"set local lock_timeout = '{int(timeout * 1000) + 5000}ms'")
        row = await conn.fetchrow(
            "select d.id, d.status, d.attempts, d.tenant_id, ep.url, ep.secret, ep.active, ev.id as event_id,"
            " ev.type, ev.payload, ev.created_at from webhook_deliveries d"
            " join webhook_endpoints ep on ep.id = d.endpoint_id join webhook_events ev on ev.id = d.event_id"
            " where d.id = $1 for update of d", delivery_id)
        if row is None:
            return Outcome("skipped")
        if row["status"] != "pending":
            return Outcome("skipped")
        if not row["active"]:
            await conn.execute("update webhook_deliveries set status = 'failed', last_error = $2 where id = $1",
                               delivery_id, "endpoint disabled")
            return Outcome("failed", "endpoint disabled")
        attempt = row["attempts"] + 1
        body = render(dict(row) | {"id": row["event_id"]})
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Merci-Event-Id": to_global("WebhookEvent", row["event_id"]),
            "Merci-Event-Type": row["type"],
            "Merci-Delivery-Id": to_global("WebhookDelivery", delivery_id),
            "Merci-Delivery-Attempt": str(attempt),
            "Merci-Signature": sign(row["secret"], timestamp, body),
        }
        started = time.monotonic()
        status_code, error, permanent = await post(row["url"], body, headers, policy=policy, timeout=timeout)
        elapsed = int((time.monotonic() - started) * 1000)
        delivered = status_code is not None and 200 <= status_code < 300
        if not delivered and error is None:
            error = f"answered {status_code}"
        await conn.execute(
            "insert into webhook_attempts (tenant_id, delivery_id, attempt, status_code, error, duration_ms)"
            " values ($1, $2, $3, $4, $5, $6)",
            row["tenant_id"], delivery_id, attempt, status_code, None if error is None else error[:1000], elapsed)
        new_status = "delivered" if delivered else "failed" if permanent else "pending"
        await conn.execute(
            "update webhook_deliveries set attempts = $2, last_attempt_at = now(), status = $3, last_error = $4,"
            " delivered_at = case when $3 = 'delivered' then now() end where id = $1",
            delivery_id, attempt, new_status, error)
    if delivered:
        return Outcome("delivered")
    return Outcome("failed" if permanent else "retry", error)


async def give_up(conn: asyncpg.Connection, *, delivery_id: int) -> None:
    await conn.execute(
        "update webhook_deliveries set status = 'failed',"
        " last_error = coalesce(last_error, '') || ' (retries exhausted)' where id = $1 and status = 'pending'",
        delivery_id)


# ---------------------------------------------------------------- the POST, SSRF-guarded

# Refusals no retry can change; a name that does not resolve or a receiver that is down may recover.
FINAL = frozenset({"FORBIDDEN_ADDRESS", "INVALID_URL", "BAD_SCHEME"})


async def post(url: str, body: bytes, headers: dict[str, str], *, policy: FetchPolicy,
               timeout: float) -> tuple[int | None, str | None, bool]:
    """(status code, error, permanent), through the guarded client (merci.fetch.post), so
    a DNS answer that changes after the check cannot reach a private address."""
    try:
        return await fetch.post(url, body, headers, policy=replace(policy, timeout=timeout)), None, False
    except FetchError as failed:  # its messages name the host, never the address it resolved to
        if failed.code == "TIMEOUT":
            return None, f"no answer within {timeout:g}s", False
        return None, failed.message, failed.code in FINAL
