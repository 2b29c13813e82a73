"""/submit and /submit/auto: where a Merci button's plain link leads (it works
without JavaScript), with Flattr's auto-submit parameters. GET shows the thing and
changes nothing; the click is a POST from this page, checked for origin and CSRF."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from api.embeds import web
from api.embeds.clicking import click
from api.embeds.i18n import FORBIDDEN, count, error_message, say
from merci import autosubmit, buttons
from merci.db import scoped
from merci.errors import UserError
from merci.ids import to_global


async def _render(request: Request, params: dict[str, str], *, lang: str, status: int = 200,
                  error: str | None = None, thanks: bool = False) -> Response:
    auto = request.url.path.rstrip("/").endswith("/auto")
    sub, problems = autosubmit.parse(params, require_url=auto)
    if problems:
        return web.error(lang, problems, status=400)
    who = await web.session(request)
    principal = who[0] if who else None
    scope = principal.scope if principal else await web.anonymous_scope(request)
    settings = web.settings_of(request)
    try:
        async with scoped(request.app.state.pool, scope) as conn:
            button = await buttons.load(conn, sub=sub, account_id=principal.account_id if principal else None,
                                        now=datetime.now(UTC), currency=settings.currency)
    except UserError as err:
        return web.error(lang, [err], status=400)
    state, n = button.state, button.count
    if thanks and state == buttons.CAN_CLICK:
        state, n = buttons.CLICKED, n + 1
    here = request.url.path + "?" + urlencode(sub.query() | {"lang": lang})
    # A supporter may also thank it every month: the web app's subscribe page (a thing
    # Merci knows, not their own).
    subscribe = "/account/subscribe?" + urlencode({"thing": to_global("Thing", button.thing["id"])}) \
        if button.thing and state in (buttons.CAN_CLICK, buttons.CLICKED, buttons.NO_MEANS) else None
    base = settings.public_url.rstrip("/")
    return web.page(
        "submit.html", lang=lang, status=status, button=button, state=state, count=count(lang, n), thanks=thanks,
        error=error, fields=sub.query(), action=here, subscribe_url=subscribe,
        csrf=web.csrf_token(settings, who[1], "submit") if who else "",
        login_url="/embed/login?" + urlencode({"next": here, "lang": lang}),
        oembed_url=f"{base}/oembed?" + urlencode({"url": base + here, "format": "json"}),
    )


async def submit_get(request: Request) -> Response:
    params = web.params(request)
    return await _render(request, params, lang=web.choose_lang(request), thanks=params.get("done") == "1")


async def submit_post(request: Request) -> Response:
    lang = web.choose_lang(request)
    data = await web.form(request)
    who = await web.session(request)
    if not web.same_origin(request) or who is None or \
            not web.csrf_ok(web.settings_of(request), who[1], "submit", data.get("csrf", "")):
        return web.error(lang, [UserError("FORBIDDEN", say(lang, FORBIDDEN))], status=403)
    auto = request.url.path.rstrip("/").endswith("/auto")
    sub, problems = autosubmit.parse(data, require_url=auto)
    if problems:
        return web.error(lang, problems, status=400)
    err = await click(request, who[0], sub)
    if err is None or err.code == "ALREADY_THIS_MONTH":
        query = urlencode(sub.query() | {"lang": lang, "done": "1"})
        return RedirectResponse(f"{request.url.path}?{query}", status_code=303)
    return await _render(request, sub.query(), lang=lang, error=error_message(lang, err.code, err.message),
                         status=503 if err.code == "UNAVAILABLE" else 409)
