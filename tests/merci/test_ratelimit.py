"""The rate limits' round trips: calls made together go to Redis as one pipeline
(merci.redis_batch), and what the limiter sends there is the `limits` library's own
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
from merci.redis_batch import ScriptBatcher
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
    assert limits.batcher is not None
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


async def test_calls_of_one_turn_share_one_pipeline(redis_client: Any) -> None:
    script = redis_client.register_script("return redis.call('incrby', KEYS[1], ARGV[1])")
    failing = redis_client.register_script("return redis.error_reply('refused by the script')")
    batcher = ScriptBatcher(redis_client)
    pipelines = 0
    real = redis_client.pipeline

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal pipelines
        pipelines += 1
        return real(*args, **kwargs)

    redis_client.pipeline = counting
    key = f"merci-test:{secrets.token_hex(6)}"
    await script(keys=[key], args=[0])  # Redis holds the script
    answers = await asyncio.gather(*(batcher.run(script, [key], [1]) for _ in range(10)),
                                   batcher.run(failing, [], []), return_exceptions=True)
    assert pipelines == 1
    assert sorted(answers[:10]) == list(range(1, 11))  # each call its own answer
    assert isinstance(answers[10], Exception) and "refused by the script" in str(answers[10])
    # A Redis that lost its scripts (restarted): the calls load them and still answer.
    await redis_client.script_flush()
    assert await asyncio.gather(batcher.run(script, [key], [1]), batcher.run(script, [key], [1])) in ([11, 12],
                                                                                                    [12, 11])
    await redis_client.delete(key)
