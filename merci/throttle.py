"""A budget of query cost per caller: a leaky bucket shared by every process (issue 16).

Each caller (an account, an API key, or an address when anonymous) has a bucket of
`size` points that refills at `rate` points a second (Shopify's: 1000 and 50). A request
takes its requested cost before it runs, or is refused (THROTTLED) with the seconds until
that much is back; after it ran, the difference between requested and actual cost is
given back. The bucket lives where the rate limits' counters do (merci.ratelimit:
MERCI_RATE_LIMIT_URL, else a Redis BROKER_URL; memory only where one process serves
everything), so that N processes do not give a caller N budgets. In Redis a bucket is
one hash updated by one script on Redis's own clock (no clock skew between processes),
one round trip a request; it expires once full again.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import structlog

from merci.config import Settings
from merci.ratelimit import storage_uri
from merci.redis_batch import ScriptBatcher

log = structlog.get_logger("merci.throttle")

# KEYS[1]: the bucket; ARGV: size, rate (points/s), cost (negative: a refund).
# Returns {taken (1/0), points available after, as text}.
_SCRIPT = """
local size = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local held = redis.call('HMGET', KEYS[1], 'points', 'at')
local points = tonumber(held[1]) or size
local at = tonumber(held[2]) or now
points = math.min(size, points + math.max(0, now - at) * rate)
local taken = 0
if cost <= points then
  points = math.min(size, points - cost)
  taken = 1
end
redis.call('HSET', KEYS[1], 'points', tostring(points), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil((size - points) / rate) + 1)
return {taken, tostring(points)}
"""


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
    def __init__(self, settings: Settings) -> None:
        self.size = settings.query_cost_bucket
        self.rate = settings.query_cost_restore_rate
        uri = storage_uri(settings).removeprefix("async+")
        self.redis: Any = None
        self.memory: dict[str, tuple[float, float]] = {}
        if uri.startswith(("redis://", "rediss://")):
            import redis.asyncio

            self.redis = redis.asyncio.Redis.from_url(uri)
            self.script = self.redis.register_script(_SCRIPT)
            self.batcher = ScriptBatcher(self.redis)  # with the other calls of this turn of the loop

    async def take(self, who: str, cost: int) -> Status:
        """Take `cost` points of `who`'s bucket if it holds them (a negative cost gives back)."""
        if self.redis is not None:
            try:
                taken, points = await self.batcher.run(self.script, [f"merci:cost:{who}"], [self.size, self.rate, cost])
                return Status(bool(taken), float(points), self.size, self.rate)
            except Exception as exc:  # Redis down: no budget is kept, the service stays up
                log.warning("query cost storage unavailable", error=str(exc))
                return Status(True, float(self.size), self.size, self.rate)
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
