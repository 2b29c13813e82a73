"""The embeddable button: `button.js` turns `<a class="merci-button">` anchors into
an iframe served from here, showing the count and the supporter's state; a click
inside it is a same-origin form POST carrying a CSRF token bound to the session.

Against invisible framing (likejacking: the button under a decoy, transparent, tiny or
covered, so that a click meant for something else lands on it): the frame's script
(frame.js) counts a click only when it is the user's own (a trusted event, with user
activation) on a button that has been in plain view for VISIBLE_MS (IntersectionObserver
v2's isVisible where the browser has it: not transparent, transformed or covered;
elsewhere wholly inside the viewport). Only then does it put into the form the proof
the server issued with the page (`shown`: a token bound to the session, stamped with
its time); the server takes a click only with a proof between VISIBLE_MS and
SHOWN_TTL old. A frame whose script does not run (sandboxed) therefore cannot click.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from api.embeds import web
from api.embeds.clicking import click
from api.embeds.i18n import CLICKED, FORBIDDEN, LABELS, STATES, count, error_message, say
from merci import accounts, autosubmit, buttons
from merci.db import Scope, scoped
from merci.errors import UserError

STATIC = Path(__file__).parent / "static"
WIDTH, HEIGHT = 190, 32  # the iframe's size; the button fits it in both languages
VISIBLE_MS = 500  # in plain view at least this long before a click counts (frame.js says the same)
SHOWN_TTL = 3600  # seconds a shown button's proof lasts (then the click asks for a reload)


def shown_proof(request: Request, binding: str, now_ms: int | None = None) -> str:
    """The proof that Merci showed this session's button at a time: `<ms>.<mac>`."""
    stamp = int(time.time() * 1000) if now_ms is None else now_ms
    return f"{stamp}.{web.csrf_token(web.settings_of(request), binding, f'shown:{stamp}')}"


def shown_ok(request: Request, binding: str, given: str) -> bool:
    stamp, _, _ = given.partition(".")
    if not stamp.isdigit() or len(stamp) > 15:
        return False
    age = time.time() * 1000 - int(stamp)
    return VISIBLE_MS <= age <= SHOWN_TTL * 1000 and web.csrf_ok(
        web.settings_of(request), binding, f"shown:{stamp}", given.partition(".")[2])


def static(name: str, content_type: str, max_age: int = 3600) -> Response:
    return Response((STATIC / name).read_bytes(), media_type=content_type,
                    headers={"Cache-Control": f"public, max-age={max_age}", "X-Content-Type-Options": "nosniff",
                             # Served to every site that embeds the button.
                             "Cross-Origin-Resource-Policy": "cross-origin"})


async def button_js(request: Request) -> Response:
    return static("button.js", "text/javascript; charset=utf-8")


async def frame_js(request: Request) -> Response:
    return static("frame.js", "text/javascript; charset=utf-8")


async def grant_js(request: Request) -> Response:
    return static("grant.js", "text/javascript; charset=utf-8")


def frame_src(base: str, sub: autosubmit.Submission, lang: str) -> str:
    return f"{base.rstrip('/')}/embed/button?" + urlencode(sub.query() | {"lang": lang})


async def button_page(request: Request, params: dict[str, str], *, notice: str | None = None,
                      error: str | None = None, status: int = 200) -> Response:
    lang = web.choose_lang(request)
    sub, problems = autosubmit.parse(params)
    if problems:
        return web.error(lang, problems, status=400, embedded=True)
    settings = web.settings_of(request)
    who = await web.session(request, embedded=True)
    principal = who[0] if who else None
    scope = principal.scope if principal else await web.anonymous_scope(request)
    try:
        async with scoped(request.app.state.pool, scope) as conn:
            button = await buttons.load(conn, sub=sub, account_id=principal.account_id if principal else None,
                                        now=datetime.now(UTC), currency=settings.currency)
    except UserError as err:
        return web.error(lang, [err], status=400, embedded=True)
    state, n = button.state, button.count
    if params.get("done") == "1" and state in (buttons.CAN_CLICK, buttons.CLICKED):
        if state == buttons.CAN_CLICK:  # just clicked: the workers count it in a moment; show it now
            state, n = buttons.CLICKED, n + 1
        notice = notice or say(lang, CLICKED)
    title = button.title[:80]
    return web.page(
        "button.html", lang=lang, status=status, button=button, state=state,
        count=count(lang, n), label=say(lang, LABELS[state], title=title),
        state_word=say(lang, STATES[state]) if state in STATES else "", fields=sub.query(),
        csrf=web.csrf_token(settings, who[1], "button") if who else "", notice=notice, error=error,
        shown=shown_proof(request, who[1]) if who else "", visible_ms=VISIBLE_MS,
        login_url="/embed/login?" + urlencode({"popup": "1", "lang": lang}),
    )


async def button_get(request: Request) -> Response:
    return await button_page(request, web.params(request))


async def button_post(request: Request) -> Response:
    """A click from inside the iframe. Refused unless the request comes from Merci's
    own page (Origin) with the token only that page holds (CSRF)."""
    lang = web.choose_lang(request)
    data = await web.form(request)
    who = await web.session(request, embedded=True)
    if not web.same_origin(request) or who is None or \
            not web.csrf_ok(web.settings_of(request), who[1], "button", data.get("csrf", "")):
        return web.error(lang, [UserError("FORBIDDEN", say(lang, FORBIDDEN))], status=403, embedded=True)
    sub, problems = autosubmit.parse(data)
    if problems:
        return web.error(lang, problems, status=400, embedded=True)
    if not shown_ok(request, who[1], data.get("shown", "")):
        # Not seen in plain view, or not clicked by the user: counted for nothing.
        err = UserError("NOT_VISIBLE", "the button was not in plain view long enough; click it again", None)
        return await button_page(request, sub.query(), error=error_message(lang, err.code, err.message),
                                 status=409)
    err = await click(request, who[0], sub)
    if err is None or err.code == "ALREADY_THIS_MONTH":
        # Post/redirect/get: reloading the frame never posts twice.
        query = urlencode(sub.query() | {"lang": lang, "done": "1"})
        return RedirectResponse(f"/embed/button?{query}", status_code=303)
    return await button_page(request, sub.query(), error=error_message(lang, err.code, err.message),
                             status=503 if err.code == "UNAVAILABLE" else 409)


async def session_post(request: Request) -> Response:
    """The iframe trades the one-time grant the login popup handed it for its own,
    partitioned session cookie (third-party cookies are blocked almost everywhere)."""
    data = await web.form(request)
    code = data.get("code", "")
    tenant_id = accounts.token_tenant(code.replace("mg_", "ms_", 1)) if code.startswith("mg_") else None
    if not web.same_origin(request) or tenant_id is None:
        return Response("refused", status_code=403, media_type="text/plain")
    settings = web.settings_of(request)
    async with scoped(request.app.state.pool, Scope(tenant_id)) as conn:
        account_id = await accounts.redeem_grant(conn, code=code)
        token = None if account_id is None else await accounts.issue_token(
            conn, tenant_id=tenant_id, account_id=account_id, ttl=timedelta(seconds=settings.token_ttl_seconds))
    if token is None:
        return Response("expired or used grant", status_code=403, media_type="text/plain")
    response = Response(status_code=204, headers={"Cache-Control": "no-store"})
    web.set_embed_cookie(response, settings, token)
    return response


async def issue_grant(request: Request, *, tenant_id: int, account_id: int) -> str:
    async with scoped(request.app.state.pool, Scope(tenant_id, account_id)) as conn:
        return await accounts.issue_grant(conn, tenant_id=tenant_id, account_id=account_id)
