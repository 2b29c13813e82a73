"""The rate limits' round trips: counters asked for together go to Redis as one script
call (merci.redis_batch), and what the limiter counts there is the `limits` library's own
sliding window, on the library's own keys (checked against its strategy, so that a
`limits` upgrade that changes either fails here)."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from merci.config import Settings
from merci.ratelimit import Limiter, RateLimited
from merci.redis_batch import CounterError, Counters, bucket, window
from tests.conftest import need

REDIS_URL = os.environ.get("REDIS_URL", "")


@pytest.fixture
async def redis_client() -> AsyncIterator[Any]:
    need(bool(REDIS_URL), "REDIS_URL (a Redis) for the rate limits' storage")
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


def limiter(**limits: str) -> Limiter:
    return Limiter(Settings(env="test", rate_limit_url=REDIS_URL,
                            rate_limits={name.replace("_", "."): text for name, text in limits.items()}))


async def test_a_limit_counts_as_the_librarys_strategy_reads_it(redis_client: Any) -> None:
    need(bool(REDIS_URL), "REDIS_URL")
    limits = limiter(login_ip="3/minute;5/hour")
    assert limits.counters is not None
    who = secrets.token_hex(6)
    await asyncio.gather(*(limits.hit("login.ip", who) for _ in range(3)))  # one turn of the loop
    with pytest.raises(RateLimited) as refused:
        await limits.hit("login.ip", who)
    assert 1 <= refused.value.retry_after <= 60
    # The library, on its own keys, sees the hits and refuses too. The windows of a limit
    # are asked together: the refused fourth still counts in the hour.
    minute, hour = limits.limits["login.ip"]
    assert (await limits.strategy.get_window_stats(minute, "login.ip", who)).remaining == 0
    assert (await limits.strategy.get_window_stats(hour, "login.ip", who)).remaining == 1
    assert not await limits.strategy.hit(minute, "login.ip", who)
    # Another client is counted apart.
    await limits.hit("login.ip", who + "-other")
    await limits.storage.reset()  # type: ignore[attr-defined]


async def test_hit_all_answers_the_longest_wait(redis_client: Any) -> None:
    need(bool(REDIS_URL), "REDIS_URL")
    limits = limiter(click_account="1/minute", click_ip="1/hour")
    who = secrets.token_hex(6)
    await limits.hit_all(("click.account", (who,), "clicks"), ("click.ip", (who,), "clicks"))
    with pytest.raises(RateLimited) as refused:
        await limits.hit_all(("click.account", (who,), "clicks"), ("click.ip", (who,), "clicks"))
    assert refused.value.retry_after > 60  # the hour's, not the minute's
    await limits.storage.reset()  # type: ignore[attr-defined]


async def test_counters_of_one_turn_share_one_script_call(redis_client: Any) -> None:
    counters = Counters(redis_client)
    calls = 0
    real = redis_client.evalsha  # (one call, one argument: the batch)

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await real(*args, **kwargs)

    redis_client.evalsha = counting
    tag = secrets.token_hex(6)
    previous, current = f"merci-test:{{{tag}}}/-1", f"merci-test:{{{tag}}}"
    wrong_type = f"merci-test:list:{tag}"
    await redis_client.rpush(wrong_type, "x")  # a key of another type fails its operation alone
    answers = await asyncio.gather(*(counters.run([window(previous, current, 3, 60, 1)]) for _ in range(5)),
                                   counters.run([bucket(f"merci-test:cost:{tag}", 100, 10, 30),
                                                 bucket(wrong_type, 100, 10, 1),
                                                 bucket(f"merci-test:cost:{tag}", 100, 10, 80)]))
    assert calls == 1
    assert sorted(a[0] for a in answers[:5]) == [0, 0, 1, 1, 1]  # three of five in a window of 3
    taken, wrong, refused = answers[5]
    assert taken[0] == 1 and float(taken[1]) == pytest.approx(70, abs=1)
    assert isinstance(wrong, CounterError) and "WRONGTYPE" in str(wrong)
    assert refused[0] == 0 and float(refused[1]) == pytest.approx(70, abs=1)  # 80 > 70: refused, nothing taken
    # A Redis that lost its scripts (restarted): the call loads it again and still answers.
    await redis_client.script_flush()
    assert await counters.run([window(previous, current, 4, 60, 1)]) == [1]
    assert calls == 3  # refused for the missing script, then again
    await redis_client.delete(previous, current, wrong_type, f"merci-test:cost:{tag}")


async def test_a_long_turn_is_sent_in_several_calls(redis_client: Any) -> None:
    counters = Counters(redis_client)
    counters.MAX_BATCH = 4
    tag = secrets.token_hex(6)
    keys = [f"merci-test:{{{tag}}}-{i}" for i in range(10)]
    answers = await asyncio.gather(*(counters.run([window(k + "/-1", k, 5, 60, 1) for k in keys[i:i + 3]])
                                     for i in range(0, 10, 3)))
    assert answers == [[1, 1, 1], [1, 1, 1], [1, 1, 1], [1]]
    await redis_client.delete(*keys)


async def test_buckets_and_limits_answer_in_one_round_trip_when_redis_is_down() -> None:
    """An unreachable Redis: the limits fail open and the bucket keeps no budget, at once."""
    settings = Settings(env="test", rate_limit_url="redis://127.0.0.1:1/0")
    limits = Limiter(settings)
    await limits.hit_all(("click.account", (1,), "clicks"), ("click.ip", ("x",), "clicks"))  # no RateLimited
    from merci.throttle import Buckets

    buckets = Buckets(settings, limits.counters)
    status = await buckets.take("account:1", 10)
    assert status.taken and status.available == settings.query_cost_bucket
    await limits.close()


@pytest.mark.parametrize(("previous", "current", "limit", "amount"), [
    (None, None, 5, 1),  # a first hit
    (None, (3, 100_000), 5, 1),  # this window only
    ((4, 30_000), (2, 100_000), 5, 1),  # both, room left (4·30/60 = 2, + 2 + 1 ≤ 5)
    ((4, 50_000), (2, 100_000), 5, 1),  # both, full: refused
    (None, (3, 20_000), 5, 1),  # this window ended: it becomes the previous one
    ((9, 5_000), (5, 40_000), 5, 2),  # ended, with an older one replaced
    ((2, 30_000), None, 5, 1),  # the previous window only
    (None, None, 5, 6),  # more than the limit at once
    (None, (5, 100_000), 5, 1),  # exactly spent
])
async def test_the_window_answers_and_counts_as_the_library_s_script(
        redis_client: Any, previous: tuple[int, int] | None, current: tuple[int, int] | None,
        limit: int, amount: int) -> None:
    """Our window (merci.redis_batch) against `limits`' own acquire_sliding_window script,
    from the same state (counts and ages of the two windows of a 60 s limit): the same
    answer and the same state after."""
    limiter_ = limiter()
    lua = limiter_.storage.bridge.lua_acquire_sliding_window  # type: ignore[attr-defined]
    counters = Counters(redis_client)
    tag = secrets.token_hex(6)
    twins = [(f"merci-test:{{{tag}-{side}}}/-1", f"merci-test:{{{tag}-{side}}}") for side in ("ours", "theirs")]
    for prev_key, cur_key in twins:
        for key, state in ((prev_key, previous), (cur_key, current)):
            if state is not None:
                await redis_client.set(key, state[0], px=state[1])
    [ours] = await counters.run([window(*twins[0], limit, 60, amount)])
    theirs = await lua(keys=list(twins[1]), args=[limit, 60, amount])
    assert bool(ours) == bool(theirs)
    after = []
    for prev_key, cur_key in twins:
        after.append([(await redis_client.get(k), await redis_client.pttl(k)) for k in (prev_key, cur_key)])
    for (count, ttl), (their_count, their_ttl) in zip(after[0], after[1], strict=True):
        assert count == their_count
        assert abs(ttl - their_ttl) < 1000  # (run a moment apart: the states differ by seconds)
    await redis_client.delete(*twins[0], *twins[1])


async def test_a_key_that_looks_like_fields_is_one_key(redis_client: Any) -> None:
    """Keys hold what clients send (an address from X-Forwarded-For): the batch writes each
    field with its length, so no key can pass for another operation's fields."""
    counters = Counters(redis_client)
    tag = secrets.token_hex(6)
    odd = f"merci-test:{{{tag}}}:1:w:5:x\t1:b\u00e9"
    answers = await counters.run([window(odd + "/-1", odd, 1, 60, 1), window(odd + "/-1", odd, 1, 60, 1),
                                  bucket(f"merci-test:{tag}:1:b", 10, 1, 3)])
    assert answers[:2] == [1, 0] and answers[2][0] == 1
    assert await redis_client.get(odd) == b"1"
    await redis_client.delete(odd, f"merci-test:{tag}:1:b")
