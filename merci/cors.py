"""Which browser origins may call the API from another origin (CORS), and with whose cookie.

Two lists make the allowlist: the web app's origins from the configuration
(MERCI_CORS_ORIGINS), and each tenant's, kept by its admins for their apps (table
cors_origins, merci/sql/0019_cors_origins.sql). A page on a listed origin may call
/graphql with a bearer token, or with the user's session cookie: any user's for a
configured origin (Merci's own web app), only the listing tenant's users' for a tenant's
origin, so that one partner's app never acts with the session of another tenant's user.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg
import structlog

from merci.errors import UserError
from merci.urls import normalize_origin

log = structlog.get_logger("merci.cors")

MAX_ORIGINS_PER_TENANT = 20


@dataclass(frozen=True)
class Listing:
    """Why an origin is allowed: configured (the web app), or listed by these tenants."""

    configured: bool
    tenants: frozenset[int]

    def takes_cookie_of(self, tenant_id: int) -> bool:
        """Whether a page of this origin may act with the session of a user of `tenant_id`."""
        return self.configured or tenant_id in self.tenants


class Allowlist:
    """The allowlist as one process sees it: the configured origins, and every tenant's,
    read whole (one small query, through merci_cors_origins()) at most every `ttl` seconds
    while requests with an Origin come, and at once after this process changed it. A
    change made through another process takes effect here within `ttl`; the lists are
    short, so a preflight or an unlisted origin never costs a query of its own."""

    def __init__(self, configured: Iterable[str], *, ttl: float = 5.0) -> None:
        self.configured = frozenset(configured)
        self.ttl = ttl
        self._listed: dict[str, frozenset[int]] = {}
        self._read_at: float | None = None  # monotonic time of the last read, None: never read
        self._lock = asyncio.Lock()

    async def lookup(self, pool: asyncpg.Pool, origin: str) -> Listing | None:
        """`origin` exactly as the browser sent it in `Origin`; None when it is not listed."""
        if self._read_at is None or time.monotonic() - self._read_at >= self.ttl:
            await self._refresh(pool)
        tenants = self._listed.get(origin, frozenset())
        configured = origin in self.configured
        return Listing(configured, tenants) if configured or tenants else None

    def forget(self) -> None:
        """This process changed a tenant's list: read it again before the next answer."""
        self._read_at = None

    async def _refresh(self, pool: asyncpg.Pool) -> None:
        stale = self._read_at
        async with self._lock:
            if self._read_at != stale:
                return  # another request read it while this one waited
            started = time.monotonic()
            try:
                async with pool.acquire() as conn:
                    rows = await conn.fetch("select origin, tenant_id from merci_cors_origins()")
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # Keep what was read last (or nothing: only the configured origins) and try
                # again after `ttl`, rather than a query per request while the database is away.
                log.warning("cors allowlist: cannot read the tenants' origins", error=str(exc))
                self._read_at = started
                return
            listed: dict[str, set[int]] = {}
            for row in rows:
                listed.setdefault(row["origin"], set()).add(row["tenant_id"])
            self._listed = {origin: frozenset(ids) for origin, ids in listed.items()}
            self._read_at = started


async def tenant_origins(conn: asyncpg.Connection) -> list[str]:
    """The transaction's tenant's origins (row-level security keeps it to them)."""
    return [r["origin"] for r in await conn.fetch("select origin from cors_origins order by origin")]


async def add_origin(conn: asyncpg.Connection, *, origin: str) -> str:
    """List `origin` for the transaction's tenant (the caller must be its admin: the
    database checks); returns it as stored. Listing it again changes nothing."""
    origin = normalize_origin(origin)
    mine = await tenant_origins(conn)
    if origin not in mine and len(mine) >= MAX_ORIGINS_PER_TENANT:
        raise UserError("TOO_MANY_ORIGINS", f"a tenant lists at most {MAX_ORIGINS_PER_TENANT} origins", "origin")
    await _list(conn, origin, listed=True)
    return origin


async def remove_origin(conn: asyncpg.Connection, *, origin: str) -> str:
    origin = normalize_origin(origin)
    if not await _list(conn, origin, listed=False):
        raise UserError("NOT_FOUND", "this origin is not listed", "origin")
    return origin


async def _list(conn: asyncpg.Connection, origin: str, *, listed: bool) -> bool:
    try:
        return bool(await conn.fetchval("select merci_list_cors_origin($1, $2)", origin, listed))
    except asyncpg.InsufficientPrivilegeError as exc:
        raise UserError("FORBIDDEN", "only a tenant admin may do this") from exc
