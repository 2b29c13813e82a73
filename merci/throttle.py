"""A budget of query cost per caller: a leaky bucket shared by every process (issue 16).

Each caller (an account, an API key, or an address when anonymous) has a bucket of
`size` points that refills at `rate` points a second (Shopify's: 1000 and 50). A request
takes its requested cost before it runs, or is refused (THROTTLED) with the seconds until
that much is back; after it ran, the difference between requested and actual cost is
given back. The bucket lives where the rate limits' counters do (merci.ratelimit:
MERCI_RATE_LIMIT_URL, else a Redis BROKER_URL; memory only where one process serves
everything), so that N processes do not give a caller N budgets. In Redis a bucket is
one hash updated by a script on Redis's own clock (no clock skew between processes),
sent with the request's other counters (merci.redis_batch); it expires once full again.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import structlog

from merci.config import Settings
from merci.ratelimit import storage_uri
from merci.redis_batch import Counters, Op, bucket

log = structlog.get_logger("merci.throttle")

@dataclass(frozen=True)
class Status:
    taken: bool
    available: float  # points left (after taking, if taken)
    size: int
    rate: float

    def retry_after(self, cost: int) -> int:
        """Whole seconds until `cost` points are back."""
        return max(1, math.ceil((cost - self.available) / self.rate))


class Buckets:
    def __init__(self, settings: Settings, counters: Counters | None = None) -> None:
        """`counters`: the rate limits' (merci.ratelimit.Limiter), so that a request's
        limits and its cost go to Redis together; else a connection of the buckets' own."""
        self.size = settings.query_cost_bucket
        self.rate = settings.query_cost_restore_rate
        uri = storage_uri(settings).removeprefix("async+")
        self.redis: Any = None  # a connection of our own, closed with us
        self.counters = counters
        self.memory: dict[str, tuple[float, float]] = {}
        if counters is None and uri.startswith(("redis://", "rediss://")):
            import redis.asyncio

            self.redis = redis.asyncio.Redis.from_url(uri)
            self.counters = Counters(self.redis)

    def op(self, who: str, cost: int) -> Op:
        """The counter operation taking `cost` of `who`'s bucket (merci.redis_batch), for a
        caller that sends it with its own; `status` reads its answer."""
        return bucket(f"merci:cost:{who}", self.size, self.rate, cost)

    def status(self, answer: Any) -> Status:
        if isinstance(answer, Exception):  # Redis down: no budget is kept, the service stays up
            log.warning("query cost storage unavailable", error=str(answer))
            return Status(True, float(self.size), self.size, self.rate)
        taken, points = answer
        return Status(bool(taken), float(points), self.size, self.rate)

    async def take(self, who: str, cost: int) -> Status:
        """Take `cost` points of `who`'s bucket if it holds them (a negative cost gives back)."""
        if self.counters is not None:
            try:
                [answer] = await self.counters.run([self.op(who, cost)])
            except Exception as exc:
                answer = exc
            return self.status(answer)
        now = time.monotonic()
        points, at = self.memory.get(who, (float(self.size), now))
        points = min(self.size, points + max(0.0, now - at) * self.rate)
        taken = cost <= points
        if taken:
            points = min(self.size, points - cost)
        if points >= self.size:
            self.memory.pop(who, None)  # full: nothing to remember
        else:
            self.memory[who] = (points, now)
        return Status(taken, points, self.size, self.rate)

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
