"""A click from one of Merci's pages (the button's iframe, /submit): checked like
`flattr`, queued through the same group-commit batcher, and, for a URL nobody
submitted yet, the new thing's owner discovery handed to the workers."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from starlette.requests import Request

from graph.ratelimit import client_ip, count_click
from merci import accounts, autosubmit, buttons, clicks
from merci.accounts import Principal
from merci.db import scoped
from merci.errors import UserError

log = logging.getLogger("merci.embeds")


async def click(request: Request, principal: Principal, sub: autosubmit.Submission) -> UserError | None:
    """None when accepted (durably queued), else why not."""
    assert principal.account_id is not None
    state = request.app.state
    try:
        accounts.require_verified(principal)
    except UserError as err:
        return err
    await count_click(state.limiter, request.scope, principal.account_id)  # RateLimited: a 429 page
    try:
        async with scoped(state.pool, principal.scope) as conn:
            accepted, new_thing = await buttons.click(
                conn, tenant_id=principal.tenant_id, account_id=principal.account_id, sub=sub,
                now=datetime.now(UTC), currency=state.settings.currency,
                client_hash=clicks.client_hash(client_ip(request.scope), state.settings.secret_key))
    except UserError as err:
        return err
    unavailable = UserError("UNAVAILABLE", "clicks cannot be accepted right now; try again", None)
    if state.clicks is None:
        return unavailable
    try:
        await state.clicks.submit(accepted)
    except UserError as err:  # MONTH_CLOSED: the month's close began since the checks (merci.clicks)
        return err
    except Exception:  # the broker is down: not accepted, and the supporter may retry safely
        log.warning("click not queued", exc_info=True)
        return unavailable
    if new_thing is not None and state.queue is not None:
        try:
            await state.queue.asend(autosubmit.DISCOVER_ACTOR, new_thing, queue_name=autosubmit.DISCOVER_QUEUE)
        except Exception:  # the workers' sweep finds pending discoveries again
            log.warning("owner discovery of thing %s not queued", new_thing, exc_info=True)
    return None
