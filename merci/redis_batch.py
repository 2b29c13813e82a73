"""Redis scripts run in one round trip per turn of the event loop.

The rate limits and the query-cost buckets ask Redis several things for each request
(per address, per account, per minute and per hour, the cost budget). With redis-py's
asyncio client each command costs about 100 µs of the process's CPU, most of it the
client's own machinery, and a click asked eight of them: more than the rest of the
click. Calls made in the same turn of the event loop (one request's limits, which
callers send together, and every other request's that arrived meanwhile) go out as one
pipeline instead, at about a fifth of that per call. Each call keeps its own answer, or
its own error; the pipeline is not a transaction (each script is atomic on its own, as
it was when sent alone).
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError


class ScriptBatcher:
    def __init__(self, client: Any) -> None:
        self.client = client
        self._pending: list[tuple[AsyncScript, list[Any], list[Any], asyncio.Future[Any]]] = []
        self._scheduled = False

    def run(self, script: AsyncScript, keys: list[Any], args: list[Any]) -> asyncio.Future[Any]:
        """The script's answer, sent with the other calls of this turn of the loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((script, keys, args, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(lambda: loop.create_task(self._flush()))
        return future

    async def _flush(self) -> None:
        batch, self._pending, self._scheduled = self._pending, [], False
        try:
            if len(batch) == 1:  # alone: no pipeline to build
                script, keys, args, future = batch[0]
                answers: list[Any] = [await script(keys=keys, args=args)]
            else:
                # EVALSHA, not the Script on the pipeline: redis-py would ask SCRIPT EXISTS
                # first, a second round trip each time.
                async with self.client.pipeline(transaction=False) as pipe:
                    for script, keys, args, _ in batch:
                        pipe.evalsha(script.sha, len(keys), *keys, *args)
                    answers = await pipe.execute(raise_on_error=False)
                for i, answer in enumerate(answers):  # a script Redis does not hold yet (a restart)
                    if isinstance(answer, NoScriptError):
                        script, keys, args, _ = batch[i]
                        try:
                            answers[i] = await script(keys=keys, args=args)  # loads it
                        except Exception as exc:
                            answers[i] = exc
        except Exception as exc:  # the connection: every call of the batch fails alike
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (*_, future), answer in zip(batch, answers, strict=True):
            if future.done():  # its caller gave up (cancelled)
                continue
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                future.set_result(answer)
