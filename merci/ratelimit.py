"""Rate limits and the wrong-password lockout, counted where every process sees them.

The counters live in Redis (MERCI_RATE_LIMIT_URL, else BROKER_URL when it is Redis), so
that two API processes, or twenty, hold a client to one limit: a limit kept in one
process's memory is multiplied by the number of processes and reset by each restart.
Memory is allowed only where one process serves everything (`merci dev`, `merci serve
all` on one machine); production and staging refuse to start without shared storage.

Limits are the `limits` library's, as a sliding window counter: two counters per key
(this window and the last), O(1) in Redis whatever the amount, refusing within a few
per cent of a true moving window. A refusal says when to come back (`Retry-After`).

The lockout is not a rate: it counts wrong passwords per account (email) and per client
address, and past a threshold refuses every attempt, right or wrong, for a window that
doubles with each further failure (60 s, 120 s, … up to 16 times the first). The window
always ends: the owner can log in once it has, and a success forgets the account's
failures. An unknown email is counted like a known one, so the limiter tells nobody
which emails exist.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import asyncpg
import structlog
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from merci import accounts
from merci.config import Settings
from merci.errors import UserError
from merci.redis_batch import Counters, Op, fields, window_of

log = structlog.get_logger("merci.ratelimit")
T = TypeVar("T")
_ONE = fields(1)  # the usual amount, as merci.redis_batch sends it
Hit = tuple[str, tuple[object, ...], str]  # (limit's name, ids it counts per, what is counted): hit_all
Refused = tuple[str, tuple[object, ...], str, RateLimitItem]  # a hit, and the window of its limit that refused it

# Production's limits, by name: what is counted, per what. `MERCI_RATE_LIMITS` replaces any
# of them; `MERCI_RATE_LIMIT_MULTIPLIER` scales all (tests' fixtures sign up hundreds).
DEFAULTS: dict[str, str] = {
    # Every /graphql request: per client address, per account, per API key, and all of a
    # tenant's API keys together (the public's anonymous traffic is held per address only,
    # so that one client cannot spend everyone's budget).
    "request.ip": "1200/minute",
    "request.account": "1200/minute",
    "request.key": "6000/minute",
    "request.tenant": "30000/minute",
    # Stricter where each request costs argon2 or creates something.
    "login.ip": "30/minute;300/hour",  # logIn and /embed/login, any outcome
    "signup.ip": "5/minute;20/hour",  # signUp and createTenant's admin
    # requestPasswordReset, resetPassword, resendVerification: each answers alike for
    # every email, and each may mail someone or hash a password.
    "reset.ip": "5/minute;30/hour",
    # Mail to one address (verification, reset, "someone tried to sign up"), whoever
    # asks: past it the request answers the same and nothing is sent (merci.account_mail).
    "mail.recipient": "3/hour;10/day",
    "click.account": "60/minute;1000/hour",  # flattr, the button, /submit
    "click.ip": "120/minute;3000/hour",
    "partner_clicks.key": "6000/minute",  # submitClicks: clicks, not calls
}

LOCKOUT_ACCOUNT = 10  # wrong passwords for one email before the lockout
LOCKOUT_IP = 50  # from one address (many people may share one: a NAT, an office)
LOCKOUT_STEPS = 4  # the window doubles at most this many times
LOCKOUT_MEMORY = 24 * 3600  # failures are forgotten a day after the first


class RateLimited(Exception):
    """Too many requests: refused, nothing done. The faces answer HTTP 429 with
    `Retry-After` (GraphQL: extensions.code RATE_LIMITED and retryAfter)."""

    code = "RATE_LIMITED"

    def __init__(self, retry_after: float, what: str = "requests") -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(f"too many {what}; try again in {self.retry_after} s")
        self.message = str(self)
        self.extensions = {"code": self.code, "retryAfter": self.retry_after}


def storage_uri(settings: Settings) -> str:
    """Where the counters live; refuses (RuntimeError) memory in production and staging."""
    url = settings.rate_limit_url or (
        settings.broker_url if settings.broker_url.startswith(("redis://", "rediss://")) else "")
    if url.startswith(("redis://", "rediss://")):
        return "async+" + url
    if url not in ("", "memory://"):
        raise RuntimeError(f"MERCI_RATE_LIMIT_URL: {url.split('://')[0]}:// is not supported: use redis://…")
    if settings.env in ("production", "staging"):
        raise RuntimeError(
            "MERCI_RATE_LIMIT_URL must name a Redis (redis://…) shared by every API process in "
            f"{settings.env}: rate limits kept in one process's memory do not hold across processes")
    return "async+memory://"


def _scaled(item: RateLimitItem, multiplier: float) -> RateLimitItem:
    amount = max(1, math.floor(item.amount * multiplier))
    return type(item)(amount, item.multiples, item.namespace)


@dataclass(frozen=True)
class Failure:
    """A wrong password, and who sent it (the keys hash the email: no address in Redis)."""

    tenant_id: int
    email: str
    ip: str
    multiplier: float = 1.0

    @property
    def keys(self) -> list[tuple[str, int]]:
        digest = hashlib.sha256(self.email.strip().lower().encode()).hexdigest()[:24]
        return [(f"account:{self.tenant_id}:{digest}", max(1, math.floor(LOCKOUT_ACCOUNT * self.multiplier))),
                (f"ip:{self.ip}", max(1, math.floor(LOCKOUT_IP * self.multiplier)))]


class Limiter:
    def __init__(self, settings: Settings, storage: Storage | None = None) -> None:
        uri = storage_uri(settings)
        self.storage = storage or (storage_from_string(uri, implementation="redispy", key_prefix="merci")
                                   if uri.startswith("async+redis") else storage_from_string(uri))
        self.shared = not isinstance(self.storage, MemoryStorage)
        self.strategy = SlidingWindowCounterRateLimiter(self.storage)
        # On Redis, the library's sliding window, sent with every other counter of the same
        # turn of the event loop in one script call (merci.redis_batch); tests/merci/
        # test_ratelimit.py holds it to the library's strategy.
        self.counters = (Counters(self.storage.bridge.get_connection())  # type: ignore[attr-defined]
                         if isinstance(self.storage, RedisStorage) else None)
        self.lockout_seconds = settings.login_lockout_seconds
        self.multiplier = settings.rate_limit_multiplier
        self.limits: dict[str, list[RateLimitItem]] = {}
        self._windows: dict[tuple[str, tuple[object, ...]], list[bytes]] = {}  # see ops
        for name, text in {**DEFAULTS, **settings.rate_limits}.items():
            if name not in DEFAULTS:
                raise RuntimeError(f"MERCI_RATE_LIMITS: no limit is named {name!r} ({', '.join(DEFAULTS)})")
            try:
                items = parse_many(text)
            except ValueError as err:
                raise RuntimeError(f"MERCI_RATE_LIMITS: {name}={text!r}: {err}") from err
            self.limits[name] = [_scaled(item, settings.rate_limit_multiplier) for item in items]

    async def hit(self, name: str, *ids: object, cost: int = 1, what: str = "requests") -> None:
        """Count `cost` against limit `name` for `ids`; RateLimited once it is spent."""
        await self.hit_all((name, ids, what), cost=cost)

    async def hit_all(self, *hits: Hit, cost: int = 1) -> None:
        """Count `cost` against several limits at once (name, ids, what), every window of
        each (a refusal by one still counts in the others); RateLimited with the longest
        wait among those refused."""
        if self.counters is None:
            refused = [(name, ids, what, item) for name, ids, what in hits for item in self.limits[name]
                       if not await self.strategy.hit(item, name, *(str(i) for i in ids), cost=cost)]
        else:
            try:
                answers = await self.counters.run(self.ops(*hits, cost=cost))
            except Exception as exc:  # storage down: the limits fail open, the service stays up
                log.warning("rate limit storage unavailable", limit=hits[0][0], error=str(exc))
                return
            read = self.refused(hits, answers)
            if read is None:
                return  # storage out of reach: the limits fail open (logged)
            refused = read
        if refused:
            await self.refuse(refused)

    def ops(self, *hits: Hit, cost: int = 1) -> list[Op]:
        """The counter operations of `hits` (merci.redis_batch), for a caller that sends them
        with its own (graph.fastpath); `refused` reads their answers."""
        ops: list[Op] = []
        for name, ids, _ in hits:
            windows = self._windows.get((name, ids))
            if windows is None:
                windows = self._windows[(name, ids)] = self._keys(name, ids)
                if len(self._windows) > 4096:  # bounded: the oldest goes (rebuilt if asked again)
                    del self._windows[next(iter(self._windows))]
            amount = _ONE if cost == 1 else fields(cost)
            ops.extend(prefix + amount for prefix in windows)
        return ops

    def _keys(self, name: str, ids: tuple[object, ...]) -> list[bytes]:
        """Per window of limit `name`, its operation for `ids` but for the amount: its keys
        as the library names them, its amount and its length."""
        storage: Any = self.storage
        bridge = storage.bridge
        windows = []
        for item in self.limits[name]:
            key = item.key_for(name, *(str(i) for i in ids))
            windows.append(window_of(bridge.prefixed_key(storage._previous_window_key(key)),
                                     bridge.prefixed_key(storage._current_window_key(key)),
                                     item.amount, item.get_expiry()))
        return windows

    def refused(self, hits: Sequence[Hit], answers: list[Any]) -> list[Refused] | None:
        """The windows of `hits` that `answers` (to `ops(*hits)`) refused; None when an
        answer is an error (the limits fail open; logged)."""
        refused = []
        i = 0
        for name, ids, what in hits:
            for item in self.limits[name]:
                answer = answers[i]
                i += 1
                if isinstance(answer, Exception):
                    log.warning("rate limit storage unavailable", limit=name, error=str(answer))
                    return None
                if not answer:
                    refused.append((name, ids, what, item))
        return refused

    async def refuse(self, refused: list[Refused]) -> None:
        """Raise RateLimited for the refused windows: the longest wait among them."""
        try:
            stats = [(what, await self.strategy.get_window_stats(item, name, *(str(i) for i in ids)))
                     for name, ids, what, item in refused]
        except Exception as exc:
            log.warning("rate limit storage unavailable", limit=refused[0][0], error=str(exc))
            return
        what, longest = max(stats, key=lambda s: s[1].reset_time)
        raise RateLimited(longest.reset_time - time.time(), what)

    async def allows(self, name: str, *ids: object) -> bool:
        """hit(), as an answer: False once `name` is spent for `ids` (a silent cap)."""
        try:
            await self.hit(name, *ids)
        except RateLimited:
            return False
        return True

    # ------------------------------------------------------------ the lockout

    async def _locked(self, key: str, threshold: int) -> float:
        """Seconds until `key`'s lockout ends (0: not locked)."""
        failures = await self.storage.get(f"lockout:fail:{key}")
        if failures < threshold:
            return 0.0
        lock = f"lockout:lock:{key}:{failures}"  # one per failure: its expiry is its window
        if await self.storage.get(lock) <= 0:
            return 0.0
        return max(0.0, await self.storage.get_expiry(lock) - time.time())

    async def check_lockout(self, failure: Failure) -> None:
        try:
            wait = max([await self._locked(key, threshold) for key, threshold in failure.keys])
        except Exception as exc:
            log.warning("rate limit storage unavailable", limit="lockout", error=str(exc))
            return
        if wait > 0:
            raise RateLimited(wait, "failed logins")

    async def failed(self, failure: Failure) -> None:
        try:
            for key, threshold in failure.keys:
                failures = await self.storage.incr(f"lockout:fail:{key}", LOCKOUT_MEMORY)
                if failures >= threshold:
                    window = self.lockout_seconds * 2 ** min(failures - threshold, LOCKOUT_STEPS)
                    await self.storage.incr(f"lockout:lock:{key}:{failures}", math.ceil(window))
        except Exception as exc:
            log.warning("rate limit storage unavailable", limit="lockout", error=str(exc))

    async def succeeded(self, failure: Failure) -> None:
        """The right password: the account's failures are forgotten (the address's stay)."""
        try:
            await self.storage.clear(f"lockout:fail:{failure.keys[0][0]}")
        except Exception as exc:
            log.warning("rate limit storage unavailable", limit="lockout", error=str(exc))

    async def guard_login(self, *, tenant_id: int, email: str, ip: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run a login `attempt` under the lockout and the per-address limit: refused
        (RateLimited) while locked, its wrong password counted, its success forgiving."""
        who = Failure(tenant_id, email, ip, self.multiplier)
        await self.check_lockout(who)
        await self.hit("login.ip", ip, what="login attempts")
        try:
            result = await attempt()
        except UserError as err:
            if err.code == "INVALID_CREDENTIALS":
                await self.failed(who)
            raise
        await self.succeeded(who)
        return result

    async def close(self) -> None:
        client = getattr(getattr(self.storage, "bridge", None), "storage", None)  # redis.asyncio's, if Redis
        if client is not None and hasattr(client, "aclose"):
            await client.aclose()


async def guarded_login(
    limiter: Limiter | None, tx: Callable[[], AbstractAsyncContextManager[asyncpg.Connection]], *,
    tenant_id: int, email: str, password: str, ttl: timedelta, ip: str,
) -> tuple[int, str]:
    """accounts.log_in under the lockout and the per-address limit (logIn, /embed/login)."""
    async def attempt() -> tuple[int, str]:
        return await accounts.log_in(tx, tenant_id=tenant_id, email=email, password=password, ttl=ttl)

    if limiter is None:
        return await attempt()
    return await limiter.guard_login(tenant_id=tenant_id, email=email, ip=ip, attempt=attempt)
