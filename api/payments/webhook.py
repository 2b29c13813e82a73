"""POST /webhooks/stripe: Stripe's events in (merci.stripe_events says what is taken).

400 with a short reason for what is refused (a signature that does not hold, a stale
timestamp, a body that is not an event): Stripe shows it in its dashboard and retries.
200 for every stored event, new or a replay, known type or not; a worker applies it.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.embeds.web import anonymous_scope
from graph.fastpath import read_body
from merci import stripe_events
from merci.db import scoped

log = logging.getLogger("merci.stripe")

PATH = "/webhooks/stripe"
MAX_BODY = 512 * 1024  # Stripe's events are a few kB; the Ingress takes at most 1 MB


async def receive(request: Request) -> Response:
    settings = request.app.state.settings
    # Read at most MAX_BODY (and a chunk): a bigger body is refused without being held whole.
    body, more, gone = await read_body(request.receive, MAX_BODY)
    if gone:
        return Response(status_code=400)  # the sender left before its body came
    if more or len(body) > MAX_BODY:
        log.warning("stripe webhook refused: a body over %d bytes", MAX_BODY)
        return JSONResponse({"error": "too large"}, status_code=413)
    try:
        async with scoped(request.app.state.pool, await anonymous_scope(request)) as conn:
            event_id, new = await stripe_events.receive(conn, settings, payload=body,
                                                        signature=request.headers.get("stripe-signature"))
    except stripe_events.BadWebhook as err:
        log.warning("stripe webhook refused: %s", err)
        return JSONResponse({"error": str(err)[:200]}, status_code=400)
    log.info("stripe webhook %s received (%s)", event_id, "new" if new else "a replay: stored before")
    queue = request.app.state.queue
    if new and queue is not None:
        try:  # after commit; should it fail, the scheduler applies it later
            await queue.asend(stripe_events.EVENT_ACTOR, event_id, queue_name=stripe_events.EVENT_QUEUE)
        except Exception:
            log.exception("stripe event %s: not enqueued; the scheduler will apply it", event_id)
    return JSONResponse({"received": True, "replay": not new})


def routes() -> list[Route]:
    return [Route(PATH, receive, methods=["POST"])]
