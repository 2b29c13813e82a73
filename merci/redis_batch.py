"""The rate limits' and query-cost buckets' counters, all sent to Redis as one script
call per turn of the event loop.

Each click counts against seven counters: its address's and account's requests, its
caller's query-cost bucket, and the clicks of its supporter and its address per minute and
per hour. Sent one script call each, they cost more of the API's CPU than the rest of
the click (redis-py's machinery, a future and a task per call, about 20 µs each even in a
pipeline) and as much of Redis's (each EVALSHA about 20 µs). So every counter operation
asked for in the same turn of the loop (one request's, which callers send together, and
every other request's that arrived meanwhile) goes out in one call of one script,
`_SCRIPT`, that runs them in turn and answers each.

Two operations exist:

- `window`: the `limits` library's sliding window counter (its `acquire_sliding_window`
  script, the same logic on the same keys: tests/merci/test_ratelimit.py holds the two
  to each other, so a `limits` upgrade that changes either fails there);
- `bucket`: a leaky bucket of query cost (merci.throttle), on Redis's own clock.

Each operation keeps its own answer, or its own error (a key of the wrong type fails
its operation alone, caught by `pcall`); the batch runs atomically, as a script does. A
Redis that lost the script (a restart) gets it again on the next call. The operations
travel as one argument (netstrings: no key can pass for another field), their keys
inside it: fine for one Redis (or a primary and its replicas), not for Redis Cluster,
which routes a script by its declared keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

# Answers, per operation: a window: 1 acquired / 0 refused; a bucket: {taken, points as text};
# an operation that failed: {'!', the error}.
_SCRIPT = r"""
local function window(previous, current, limit, expiry, amount)
  -- limits' acquire_sliding_window.lua (same keys, same counts, same expiries), with fewer
  -- calls: what the shift of windows moves is known without reading it back, and the
  -- previous window's age matters only when it holds a count
  expiry = expiry * 1000
  if amount > limit then return 0 end
  local current_ttl = redis.call('pttl', current)
  local exists = current_ttl ~= -2
  local previous_count, previous_ttl, current_count
  if current_ttl > 0 and current_ttl < expiry then
    -- the current window expired: it becomes the previous one
    previous_count = tonumber(redis.call('get', current)) or 0
    redis.call('rename', current, previous)
    previous_ttl = current_ttl
    current_ttl = current_ttl + expiry
    redis.call('set', current, 0, 'PX', current_ttl)
    current_count = 0
  else
    local counts = redis.call('mget', previous, current)
    previous_count = tonumber(counts[1]) or 0
    current_count = tonumber(counts[2]) or 0
    previous_ttl = previous_count ~= 0 and redis.call('pttl', previous) or 0
  end
  if previous_ttl <= 0 then previous_ttl = 0 end
  if current_ttl <= 0 then current_ttl = 0 end
  local weighted = math.floor(previous_count * previous_ttl / expiry) + current_count
  if weighted + amount > limit then return 0 end
  if exists then
    redis.call('incrby', current, amount)
  else
    redis.call('set', current, amount, 'PX', expiry * 2)
  end
  return 1
end

local function bucket(key, size, rate, cost, now)
  local held = redis.call('HMGET', key, 'points', 'at')
  local points = tonumber(held[1]) or size
  local at = tonumber(held[2]) or now
  points = math.min(size, points + math.max(0, now - at) * rate)
  local taken = 0
  if cost <= points then
    points = math.min(size, points - cost)
    taken = 1
  end
  redis.call('HSET', key, 'points', tostring(points), 'at', tostring(now))
  redis.call('EXPIRE', key, math.ceil((size - points) / rate) + 1)
  return {taken, tostring(points)}
end

-- ARGV[1]: the operations, each field written as a netstring ("<length>:<bytes>"), so that
-- no key, whatever it holds, is taken for another field
local blob = ARGV[1]
local pos = 1
local function field()
  local colon = string.find(blob, ':', pos, true)
  local n = tonumber(string.sub(blob, pos, colon - 1))
  local value = string.sub(blob, colon + 1, colon + n)
  pos = colon + n + 1
  return value
end

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local answers = {}
local i = 1
while pos <= #blob do
  local kind = field()
  local ok, answer
  if kind == 'w' then
    local previous, current = field(), field()
    local limit, expiry, amount = tonumber(field()), tonumber(field()), tonumber(field())
    ok, answer = pcall(window, previous, current, limit, expiry, amount)
  elseif kind == 'b' then
    local key = field()
    local size, rate, cost = tonumber(field()), tonumber(field()), tonumber(field())
    ok, answer = pcall(bucket, key, size, rate, cost, now)
  else
    return redis.error_reply('unknown counter operation ' .. tostring(kind))
  end
  if ok then
    answers[i] = answer
  elseif type(answer) == 'table' and answer.err then
    answers[i] = {'!', answer.err}
  else
    answers[i] = {'!', tostring(answer)}
  end
  i = i + 1
end
return answers
"""

# An operation as the script reads it: its kind and its fields, each a netstring.
Op = bytes


def fields(*values: object) -> bytes:
    """Values as the script reads them: each a netstring of its text in UTF-8."""
    out = []
    for value in values:
        data = value if isinstance(value, bytes) else str(value).encode()
        out.append(b"%d:%b" % (len(data), data))
    return b"".join(out)


def window(previous: str, current: str, limit: int, expiry: int, amount: int) -> Op:
    """A sliding window counter's hit: answers 1 (counted) or 0 (refused, not counted).
    A caller that hits the same window often keeps `window_of(...)` and adds the amount."""
    return window_of(previous, current, limit, expiry) + fields(amount)


def window_of(previous: str, current: str, limit: int, expiry: int) -> bytes:
    """A window's operation but for its amount (`fields(amount)` completes it)."""
    return fields("w", previous, current, limit, expiry)


def bucket(key: str, size: int, rate: float, cost: int) -> Op:
    """Take `cost` points of a bucket (negative: give back): answers [taken, points left]."""
    return fields("b", key, size, rate, cost)


class CounterError(Exception):
    """One operation failed in Redis (e.g. its key holds another type)."""


class Counters:
    """Counter operations, batched per turn of the event loop into one script call."""

    MAX_BATCH = 512  # operations per script call: a longer turn sends several

    def __init__(self, client: Any) -> None:
        self.client = client
        self.sha = client.register_script(_SCRIPT).sha
        self._pending: list[tuple[Sequence[Op], asyncio.Future[list[Any]]]] = []
        self._scheduled = False

    def run(self, ops: Sequence[Op]) -> asyncio.Future[list[Any]]:
        """The answers of `ops`, in order (a failed operation's answer is a CounterError),
        sent with every other call of this turn of the loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._pending.append((ops, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._start, loop)
        return future

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._pending, self._scheduled = self._pending, [], False
        loop.create_task(self._flush(batch))

    async def _flush(self, batch: list[tuple[Sequence[Op], asyncio.Future[list[Any]]]]) -> None:
        chunks: list[list[tuple[Sequence[Op], asyncio.Future[list[Any]]]]] = [[]]
        size = 0
        for call in batch:
            if size and size + len(call[0]) > self.MAX_BATCH:
                chunks.append([])
                size = 0
            chunks[-1].append(call)
            size += len(call[0])
        for chunk in chunks:
            try:
                answers = await self._send([op for ops, _ in chunk for op in ops])
            except Exception as exc:  # the connection: every call of the chunk fails alike
                for _, future in chunk:
                    if not future.done():
                        future.set_exception(exc)
                continue
            i = 0
            for ops, future in chunk:
                mine, i = answers[i:i + len(ops)], i + len(ops)
                if not future.done():  # (its caller may have given up: cancelled)
                    future.set_result([_answer(a) for a in mine])

    async def _send(self, ops: list[Op]) -> list[Any]:
        # One argument for the whole batch: redis-py encodes each argument in Python, and a
        # click's seven operations were forty of them.
        blob = b"".join(ops)
        try:
            answers = await self.client.evalsha(self.sha, 0, blob)
        except NoScriptError:  # Redis restarted, or flushed its scripts: load it again
            self.sha = await self.client.script_load(_SCRIPT)
            answers = await self.client.evalsha(self.sha, 0, blob)
        if len(answers) != len(ops):
            raise RuntimeError(f"the counters' script answered {len(answers)} of {len(ops)} operations")
        return list(answers)


def _answer(answer: Any) -> Any:
    if isinstance(answer, list) and answer and answer[0] in (b"!", "!"):
        message = answer[1].decode() if isinstance(answer[1], bytes) else str(answer[1])
        return CounterError(message)
    return answer
