"""Accounts, passwords, session tokens and the principal a request acts as."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import asyncpg
import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from merci import password_policy
from merci.db import Scope
from merci.errors import Checks, UserError

log = structlog.get_logger("merci.accounts")
T = TypeVar("T")

_hasher = PasswordHasher()  # argon2id with the library's current defaults
# Verified when the email is unknown, so a login takes the same time either way.
_DUMMY_HASH = _hasher.hash("merci-dummy-password")


class PasswordWork:
    """argon2 off the event loop, at most `threads` at once in this process.

    One hash costs ~50 ms of CPU and 64 MiB: on the event loop, ten wrong passwords in
    flight stalled every other request (even /healthz) for seconds. In a small pool of
    its own threads (argon2-cffi lets go of the GIL while it hashes) the loop keeps
    serving, and the pool's size is the semaphore: more logins wait their turn, without
    holding a database connection (log_in verifies between two transactions) nor taking
    more memory. The app sets `threads` from MERCI_PASSWORD_HASH_THREADS.
    """

    def __init__(self, threads: int = 2) -> None:
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None

    def configure(self, threads: int) -> None:
        if threads != self.threads:
            old, self._pool, self.threads = self._pool, None, max(1, threads)
            if old is not None:
                old.shutdown(wait=False)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="argon2",
                                            initializer=_yield_to_the_loop)
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)


def _yield_to_the_loop() -> None:
    """A hashing thread runs niced (Linux sets a thread's own priority): when the cores are
    busy, the event loop's thread, which answers everything else, gets them first."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


passwords = PasswordWork()


async def hash_password(password: str) -> str:
    return await passwords.run(_hasher.hash, password)


async def verify_password(password_hash: str, password: str) -> bool:
    def verify() -> bool:
        try:
            return bool(_hasher.verify(password_hash, password))
        except (VerificationError, InvalidHashError):
            return False

    return await passwords.run(verify)

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
HANDLE_RE = re.compile(r"^[a-z0-9_]{3,30}$")
MIN_PASSWORD = 10
SESSION_COOKIE = "merci_session"  # the web session's cookie: set by logIn and /embed/login, read by every face
MAX_PASSWORD = 1000
RESERVED_HANDLES = frozenset({"admin", "merci", "root", "support", "api", "www", "embed", "badge"})


@dataclass(frozen=True)
class Principal:
    """Who is calling: an account (session token), an API key, or nobody."""

    tenant_id: int
    account_id: int | None = None
    api_key_id: int | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    tenant_admin: bool = False
    platform_admin: bool = False
    email_verified: bool = False  # an account's: may money move for it (require_verified)

    @property
    def scope(self) -> Scope:
        return Scope(self.tenant_id, self.account_id, self.platform_admin)

    @property
    def authenticated(self) -> bool:
        return self.account_id is not None or self.api_key_id is not None

    @property
    def tenant_wide(self) -> bool:
        """Sees what its tenant keeps from the public (unlisted sites, hidden things): the
        tenant's admins and any of its API keys."""
        return self.tenant_admin or self.platform_admin or self.api_key_id is not None


def normalize_email(raw: str) -> str:
    email = raw.strip().lower()
    if len(email) > 254 or not EMAIL_RE.match(email):
        raise UserError("INVALID_EMAIL", "enter a valid email address", "email")
    return email


def normalize_handle(raw: str) -> str:
    handle = raw.strip().lower()
    if not HANDLE_RE.match(handle):
        raise UserError(
            "INVALID_HANDLE", "a handle is 3 to 30 letters, digits or underscores", "handle"
        )
    if handle in RESERVED_HANDLES:
        raise UserError("HANDLE_TAKEN", "this handle is not available", "handle")
    return handle


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(
            "PASSWORD_TOO_SHORT", f"a password has at least {MIN_PASSWORD} characters", "password"
        )
    if len(password) > MAX_PASSWORD:
        raise UserError("PASSWORD_TOO_LONG", "this password is too long", "password")


def hash_secret(secret: str) -> bytes:
    """Tokens and API keys are random and long: a fast hash is enough (no brute force)."""
    return hashlib.sha256(secret.encode()).digest()


def check_sign_up(checks: Checks, *, email: str, password: str, handle: str, display_name: str = "",
                  prefix: str = "") -> tuple[str | None, str | None]:
    """Adds to `checks` what a sign-up refuses without the database; returns the email
    and handle as stored (None where refused), so that the database's checks of the
    good ones run too. `prefix` locates the fields in a larger input ("admin.")."""
    mine = Checks()
    clean_email = mine(normalize_email, email)
    clean_handle = mine(normalize_handle, handle)
    mine(check_password, password)
    if len(display_name) > 100:
        mine.refuse(UserError("INVALID_DISPLAY_NAME", "a display name has at most 100 characters", "displayName"))
    for err in mine.errors:
        checks.refuse(UserError(err.code, err.message, prefix + err.field if err.field else None))
    return clean_email, clean_handle


async def hash_new_password(password: str) -> str | None:
    """The hash sign_up stores, computed before its transaction (so that no connection is
    held while it waits for a thread); None for a password sign_up will refuse anyway."""
    try:
        check_password(password)
    except UserError:
        return None
    return await hash_password(password)


async def check_strength(checks: Checks, *, password: str, email: str, handle: str = "", display_name: str = "",
                         prefix: str = "") -> None:
    """WEAK_PASSWORD, with zxcvbn's advice as the message, for a password an attacker
    would guess (merci.password_policy), judged in the password threads. A password
    refused for its length is not judged (check_password says why already)."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        return
    score, advice = await passwords.run(password_policy.judge, password,
                                        password_policy.user_inputs(email, handle, display_name))
    if score < password_policy.MIN_SCORE:
        checks.refuse(UserError("WEAK_PASSWORD", f"this password is too easy to guess: {advice}",
                                prefix + "password"))


async def check_new_account(
    conn: asyncpg.Connection, *, tenant_id: int, email: str, password: str, handle: str, display_name: str = "",
) -> tuple[str, str, int | None]:
    """Every refusal of a sign-up but a taken email, at once (a bad handle does not hide
    a weak password): raises UserError(s). Returns the email and handle as stored, and
    the id of the account that already has that email, if one does."""
    checks = Checks()
    clean_email, clean_handle = check_sign_up(checks, email=email, password=password, handle=handle,
                                              display_name=display_name)
    await check_strength(checks, password=password, email=email, handle=handle, display_name=display_name)
    existing: int | None = None
    if clean_email is not None:
        existing = await id_by_email(conn, tenant_id=tenant_id, email=clean_email)
    if clean_handle is not None and await conn.fetchval("select 1 from accounts where handle = $1", clean_handle):
        checks.refuse(UserError("HANDLE_TAKEN", "this handle is not available", "handle"))
    checks.done()
    assert clean_email is not None and clean_handle is not None
    return clean_email, clean_handle, existing


async def id_by_email(conn: asyncpg.Connection, *, tenant_id: int, email: str) -> int | None:
    account_id: int | None = await conn.fetchval(
        "select account_id from account_private where tenant_id = $1 and email = $2", tenant_id, email)
    return account_id


async def create_account(conn: asyncpg.Connection, *, tenant_id: int, email: str, handle: str, display_name: str,
                         password_hash: str) -> int:
    """The rows of a checked sign-up (check_new_account); its email not yet verified."""
    try:
        async with conn.transaction():  # savepoint: a lost race leaves nothing behind
            account_id: int = await conn.fetchval(
                "insert into accounts (tenant_id, handle, display_name) values ($1, $2, $3)"
                " returning id",
                tenant_id, handle, display_name.strip() or handle,
            )
            await conn.execute(
                "insert into account_private (account_id, tenant_id, email, password_hash)"
                " values ($1, $2, $3, $4)",
                account_id, tenant_id, email, password_hash,
            )
    except asyncpg.UniqueViolationError as exc:
        which = "handle" if "handle" in (exc.constraint_name or "") else "email"
        raise UserError(f"{which.upper()}_TAKEN", f"this {which} is not available", which) from exc
    return account_id


async def sign_up(
    conn: asyncpg.Connection, *, tenant_id: int, email: str, password: str, handle: str,
    display_name: str = "", password_hash: str | None = None,
) -> int:
    """An account, unverified (EMAIL_TAKEN when the email has one: the API's signUp
    answers that case otherwise, merci.account_mail.sign_up). `password_hash`:
    hash_new_password(password), if the caller computed it already."""
    email, handle, existing = await check_new_account(conn, tenant_id=tenant_id, email=email, password=password,
                                                      handle=handle, display_name=display_name)
    if existing is not None:
        raise UserError("EMAIL_TAKEN", "an account with this email already exists", "email")
    password_hash = password_hash or await hash_password(password)
    return await create_account(conn, tenant_id=tenant_id, email=email, handle=handle, display_name=display_name,
                                password_hash=password_hash)


async def mark_verified(conn: asyncpg.Connection, *, account_id: int) -> None:
    """The account's email counts as verified: for merci_system only (the demo data, the
    tests' factories); the API verifies through a link (merci.account_mail)."""
    await conn.execute("update account_private set email_verified_at = coalesce(email_verified_at, now())"
                       " where account_id = $1", account_id)


def require_verified(principal: Principal) -> None:
    """Money moves only for an account whose email is verified: topping up, clicking
    (flattr, the button, /submit), subscribing, asking for a payout (docs/api.md)."""
    if principal.account_id is not None and not principal.email_verified:
        raise UserError("EMAIL_NOT_VERIFIED",
                        "verify your email address first: follow the link we sent you (resendVerification)", None)


async def log_in(
    tx: Callable[[], AbstractAsyncContextManager[asyncpg.Connection]], *, tenant_id: int, email: str,
    password: str, ttl: timedelta,
) -> tuple[int, str]:
    """Check credentials; return (account id, bearer token). One error for every failure.

    `tx` opens a scoped transaction: one reads the hash, another issues the token, and no
    connection is held while argon2 runs (PasswordWork), however many logins wait."""
    denied = UserError("INVALID_CREDENTIALS", "wrong email or password", None)
    try:
        email = normalize_email(email)
    except UserError:
        raise denied from None
    async with tx() as conn:
        row = await conn.fetchrow(
            "select account_id, password_hash from account_private where tenant_id = $1 and email = $2",
            tenant_id, email,
        )
    if not await verify_password(row["password_hash"] if row else _DUMMY_HASH, password) or row is None:
        raise denied
    async with tx() as conn:
        token = await issue_token(conn, tenant_id=tenant_id, account_id=row["account_id"], ttl=ttl)
    return row["account_id"], token


async def password_matches(tx: Callable[[], AbstractAsyncContextManager[asyncpg.Connection]], *, account_id: int,
                           password: str) -> bool:
    """The account's own password, again (changing it, deleting the account); argon2 runs
    with no connection held, as in log_in."""
    async with tx() as conn:
        password_hash = await conn.fetchval("select password_hash from account_private where account_id = $1",
                                            account_id)
    return await verify_password(password_hash or _DUMMY_HASH, password) and password_hash is not None


async def issue_token(
    conn: asyncpg.Connection, *, tenant_id: int, account_id: int, ttl: timedelta
) -> str:
    # The tenant id is part of the token so the lookup can run under that
    # tenant's RLS scope: no function needs to see every tenant's tokens.
    token = f"ms_{tenant_id}_{secrets.token_urlsafe(32)}"
    await conn.execute(
        "insert into auth_tokens (tenant_id, account_id, token_hash, expires_at)"
        " values ($1, $2, $3, now() + $4::interval)",
        tenant_id, account_id, hash_secret(token), ttl,
    )
    return token


async def revoke_token(conn: asyncpg.Connection, *, token: str) -> bool:
    done = await conn.execute(
        "update auth_tokens set revoked_at = now() where token_hash = $1 and revoked_at is null",
        hash_secret(token),
    )
    return bool(done.endswith(" 1"))


async def revoke_all_tokens(conn: asyncpg.Connection, *, account_id: int) -> None:
    """Ends every session of the account (logging out everywhere)."""
    await conn.execute("update auth_tokens set revoked_at = now() where account_id = $1 and revoked_at is null",
                       account_id)


# A one-time code by which the login popup hands the button's iframe a session: the
# iframe trades it for a partitioned cookie of its own (third-party cookies are blocked
# almost everywhere). Short-lived, and good once.
GRANT_TTL = timedelta(minutes=2)


async def issue_grant(conn: asyncpg.Connection, *, tenant_id: int, account_id: int) -> str:
    code = f"mg_{tenant_id}_{secrets.token_urlsafe(32)}"
    await conn.execute("insert into embed_grants (code_hash, tenant_id, account_id, expires_at)"
                       " values ($1, $2, $3, now() + $4::interval)", hash_secret(code), tenant_id, account_id,
                       GRANT_TTL)
    return code


async def redeem_grant(conn: asyncpg.Connection, *, code: str) -> int | None:
    """The grant's account, the first time only; None once used, expired or unknown."""
    account_id: int | None = await conn.fetchval(
        "update embed_grants set used_at = now() where code_hash = $1 and used_at is null"
        " and expires_at > now() returning account_id", hash_secret(code))
    return account_id


def token_tenant(token: str) -> int | None:
    """The tenant named by a session token or API key (`ms_<tenant>_…`, `mk_<tenant>_…`)."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] not in ("ms", "mk") or not parts[1].isdigit() or len(parts[1]) > 18:
        return None
    return int(parts[1])


async def resolve_session(conn: asyncpg.Connection, *, token: str) -> Principal | None:
    row = await conn.fetchrow(
        "select t.account_id, t.tenant_id, p.is_tenant_admin, p.is_platform_admin,"
        "       p.email_verified_at is not null as email_verified"
        "  from auth_tokens t join account_private p on p.account_id = t.account_id"
        " where t.token_hash = $1 and t.revoked_at is null and t.expires_at > now()",
        hash_secret(token),
    )
    if row is None:
        return None
    return Principal(
        tenant_id=row["tenant_id"], account_id=row["account_id"],
        tenant_admin=row["is_tenant_admin"], platform_admin=row["is_platform_admin"],
        email_verified=row["email_verified"],
    )


async def resolve_api_key(conn: asyncpg.Connection, *, key: str) -> Principal | None:
    row = await conn.fetchrow(
        "select id, tenant_id, scopes from api_keys where secret_hash = $1 and revoked_at is null",
        hash_secret(key),
    )
    if row is None:
        return None
    return Principal(
        tenant_id=row["tenant_id"], api_key_id=row["id"], scopes=frozenset(row["scopes"])
    )


PROFILE_COLUMNS = "id, tenant_id, handle, display_name, created_at"


async def profiles(conn: asyncpg.Connection, *, account_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Public profiles by id (accounts are readable across tenants by policy)."""
    rows = await conn.fetch(f"select {PROFILE_COLUMNS} from accounts where id = any($1::bigint[])", account_ids)
    return {r["id"]: dict(r) for r in rows}


async def id_by_handle(conn: asyncpg.Connection, *, handle: str) -> int | None:
    account_id: int | None = await conn.fetchval("select id from accounts where handle = $1", handle)
    return account_id


async def handle_of(conn: asyncpg.Connection, *, account_id: int) -> str | None:
    handle: str | None = await conn.fetchval("select handle from accounts where id = $1", account_id)
    return handle


async def own_account(conn: asyncpg.Connection, *, account_id: int) -> dict[str, Any] | None:
    """The profile with what only its owner sees: email and roles."""
    row = await conn.fetchrow(
        "select a.id, a.tenant_id, a.handle, a.display_name, a.created_at, p.email,"
        "       p.is_tenant_admin, p.is_platform_admin, p.email_verified_at"
        "  from accounts a join account_private p on p.account_id = a.id where a.id = $1",
        account_id,
    )
    return None if row is None else dict(row)


async def in_current_tenant(conn: asyncpg.Connection, *, account_id: int) -> bool:
    """Whether the account's home is the tenant the transaction is scoped to."""
    return bool(await conn.fetchval("select 1 from accounts where id = $1 and tenant_id = merci_tenant()",
                                    account_id))


class PrincipalCache:
    """Resolved tokens, kept a few seconds so a busy client costs no lookup per request.

    Only while this process hears the database's evictions (PrincipalEvictions, started
    with each API app): a logout, a revoked key or a changed admin right, in any process,
    evicts at once in every one. With no live listener nothing is cached, since nothing
    would say what changed. `ttl` (MERCI_AUTH_CACHE_SECONDS, 0 disables) bounds an entry's
    life all the same.
    """

    def __init__(self, ttl: float, max_entries: int = 50_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.entries: dict[bytes, tuple[float, Principal]] = {}
        # The entries of each account and API key, so that an eviction (of which a mass
        # revocation sends thousands) costs what it evicts, not a scan of the cache.
        self.by_account: dict[int, set[bytes]] = {}
        self.by_key: dict[int, set[bytes]] = {}
        self.listeners = 0  # live PrincipalEvictions in this process
        self.generation = 0  # moves on with every eviction

    def get(self, token: str, now: float) -> Principal | None:
        hit = self.entries.get(hash_secret(token))
        if hit is None or hit[0] < now:
            return None
        return hit[1]

    def put(self, token: str, principal: Principal, now: float, generation: int) -> None:
        """Keep what a lookup found, unless anything was evicted since it began
        (`generation`, read before the lookup): it may have read what was just revoked."""
        if self.ttl <= 0 or self.listeners <= 0 or generation != self.generation:
            return
        if len(self.entries) >= self.max_entries:
            self._drop_all()  # crude but bounded; a miss only costs a lookup
        key = hash_secret(token)
        self._pop(key)
        self.entries[key] = (now + self.ttl, principal)
        if principal.account_id is not None:
            self.by_account.setdefault(principal.account_id, set()).add(key)
        if principal.api_key_id is not None:
            self.by_key.setdefault(principal.api_key_id, set()).add(key)

    def forget(self, *, token: str | None = None, account_id: int | None = None,
               api_key_id: int | None = None) -> None:
        self.generation += 1
        if token is not None:
            self._pop(hash_secret(token))
        if account_id is not None:
            for key in self.by_account.get(account_id, set()).copy():
                self._pop(key)
        if api_key_id is not None:
            for key in self.by_key.get(api_key_id, set()).copy():
                self._pop(key)

    def clear(self) -> None:
        self.generation += 1
        self._drop_all()

    def _pop(self, key: bytes) -> None:
        hit = self.entries.pop(key, None)
        if hit is None:
            return
        for index, owner in ((self.by_account, hit[1].account_id), (self.by_key, hit[1].api_key_id)):
            if owner is not None:
                keys = index.get(owner)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[owner]

    def _drop_all(self) -> None:
        self.entries.clear()
        self.by_account.clear()
        self.by_key.clear()

    def listening(self, delta: int) -> None:
        """A listener came (+1) or went (-1). Going, it may have missed evictions: all goes."""
        self.listeners += delta
        if delta < 0:
            self.clear()


PRINCIPALS_CHANNEL = "merci_principals"  # see migration 0010_principal_events


class PrincipalEvictions:
    """Hears the database announce changed principals (LISTEN merci_principals) and
    evicts them from `cache`. While its connection is down the cache keeps nothing, and
    it reconnects every `retry` seconds."""

    def __init__(self, dsn: str, cache: PrincipalCache, *, retry: float = 1.0) -> None:
        self.dsn = dsn
        self.cache = cache
        self.retry = retry
        self.conn: asyncpg.Connection | None = None
        self.task: asyncio.Task[None] | None = None
        self.closed = False

    async def start(self) -> PrincipalEvictions:
        if not await self._connect():
            self.task = asyncio.create_task(self._reconnect())
        return self

    async def _connect(self, *, quiet: bool = False) -> bool:
        """Listen on a new connection; False (logged unless `quiet`: a retry) if it cannot."""
        conn = None
        try:
            conn = await asyncpg.connect(self.dsn)
            await conn.add_listener(PRINCIPALS_CHANNEL, self._heard)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if conn is not None:
                await conn.close()
            if not quiet:
                log.warning("principal evictions: cannot listen, caching no principals", error=str(exc))
            return False
        conn.add_termination_listener(self._lost)
        self.conn = conn
        self.cache.listening(+1)
        return True

    def _heard(self, conn: object, pid: int, channel: str, payload: str) -> None:
        kind, _, value = payload.partition(":")
        if kind == "account" and value.isdigit():
            self.cache.forget(account_id=int(value))
        elif kind == "key" and value.isdigit():
            self.cache.forget(api_key_id=int(value))
        else:  # not ours to parse: forgetting everything is always safe
            self.cache.clear()

    def _lost(self, conn: object) -> None:
        if conn is not self.conn:
            return  # closed by close(), or an older connection
        self.conn = None
        self.cache.listening(-1)
        if not self.closed:
            log.warning("principal evictions: connection lost, caching no principals until it is back")
            self.task = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        while not self.closed:
            await asyncio.sleep(self.retry)
            if not self.closed and await self._connect(quiet=True):
                log.info("principal evictions: listening again")
                return

    async def close(self) -> None:
        self.closed = True
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        conn, self.conn = self.conn, None
        if conn is not None:
            self.cache.listening(-1)
            await conn.close()


# The process's cache: the app that serves it sets its ttl (settings.auth_cache_seconds);
# until a listener starts with that app, nothing is cached anyway.
principals = PrincipalCache(0.0)
