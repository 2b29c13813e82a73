"""The pages the account mails link to, and the dev mailbox.

- /account/verify?token=: a button that verifies the address (and logs in the first
  time). A POST, not the GET itself: mail scanners open links, and must neither verify
  on the owner's behalf nor take the session the first verification gives.
- /account/reset?token=: a form for the new password (the same checks as resetPassword).
- /dev/mailbox (development and test only): the outbox, newest first, `?to=` one
  recipient, `?format=json` for scripts and tests.
The token is the secret: another site cannot post a form with it without having it,
and Origin is checked all the same.
"""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.accounts.mutations import send_mail
from api.embeds import web
from api.embeds.i18n import FORBIDDEN, say
from graph.ratelimit import client_ip
from merci import account_mail, accounts, mail
from merci.db import scoped
from merci.errors import UserError


def _token(request: Request, data: dict[str, str] | None = None) -> str:
    return (data or {}).get("token") or web.params(request).get("token", "")


async def _limit(request: Request) -> None:
    limiter = request.app.state.limiter
    if limiter is not None:  # RateLimited: the shell answers 429 with a page
        await limiter.hit("reset.ip", client_ip(request.scope), what="password resets")


async def verify_get(request: Request) -> Response:
    lang = web.choose_lang(request)
    return web.page("verify.html", lang=lang, token=_token(request), done=False, error=None)


async def verify_post(request: Request) -> Response:
    lang = web.choose_lang(request)
    data = await web.form(request)
    if not web.same_origin(request):
        return web.error(lang, [UserError("FORBIDDEN", say(lang, FORBIDDEN))], status=403)
    settings = web.settings_of(request)
    try:
        async with scoped(request.app.state.pool, await web.anonymous_scope(request)) as conn:
            claim, verified = await account_mail.verify_email(conn, settings, token=_token(request, data))
            token = None if not verified else await accounts.issue_token(
                conn, tenant_id=claim.tenant_id, account_id=claim.account_id,
                ttl=timedelta(seconds=settings.token_ttl_seconds))
    except UserError as err:
        return web.page("verify.html", lang=lang, status=400, token="", done=False, error=err.code)
    response = web.page("verify.html", lang=lang, token="", done=True, error=None)
    if token is not None:
        web.set_session_cookie(response, settings, token)
    return response


async def reset_get(request: Request) -> Response:
    lang = web.choose_lang(request)
    return web.page("reset.html", lang=lang, token=_token(request), done=False, errors=[])


async def reset_post(request: Request) -> Response:
    lang = web.choose_lang(request)
    data = await web.form(request)
    if not web.same_origin(request):
        return web.error(lang, [UserError("FORBIDDEN", say(lang, FORBIDDEN))], status=403)
    await _limit(request)
    settings, pool, token = web.settings_of(request), request.app.state.pool, _token(request, data)
    password = data.get("password", "")
    try:
        async with scoped(pool, await web.anonymous_scope(request)) as conn:
            await account_mail.check_reset(conn, settings, token=token, new_password=password)
        password_hash = await accounts.hash_password(password)  # no connection held meanwhile
        async with scoped(pool, await web.anonymous_scope(request)) as conn:
            claim, _ = await account_mail.check_reset(conn, settings, token=token, new_password=password)
            mail_id = await account_mail.set_password(conn, settings, tenant_id=claim.tenant_id,
                                                      account_id=claim.account_id, password_hash=password_hash,
                                                      by_link=True, lang=lang)
    except UserError as err:
        return web.page("reset.html", lang=lang, status=400, token=token, done=False, errors=err.each())
    accounts.principals.forget(account_id=claim.account_id)
    await send_mail(request.app.state.queue, mail_id)
    return web.page("reset.html", lang=lang, token="", done=True, errors=[])


async def mailbox(request: Request) -> Response:
    """Development and test only: 404 elsewhere (and the database refuses it there too)."""
    if not web.settings_of(request).dev_env:
        return Response("Not Found", status_code=404)
    lang = web.choose_lang(request)
    params = web.params(request)
    async with request.app.state.pool.acquire() as conn:
        mails = await mail.mailbox(conn, recipient=params.get("to") or None,
                                   limit=int(params["limit"]) if params.get("limit", "").isdigit() else 50)
    if params.get("format") == "json":
        return JSONResponse([{**m, "created_at": m["created_at"].isoformat(),
                              "sent_at": m["sent_at"].isoformat() if m["sent_at"] else None} for m in mails],
                            headers={"Cache-Control": "no-store"})
    return web.page("mailbox.html", lang=lang, mails=mails, to=params.get("to", ""))


def routes(*, dev_env: bool) -> list[Route]:
    """The account pages; the dev mailbox only where `dev_env` (development and test)."""
    return [
        Route(account_mail.VERIFY_PATH, verify_get, methods=["GET"]),
        Route(account_mail.VERIFY_PATH, verify_post, methods=["POST"]),
        Route(account_mail.RESET_PATH, reset_get, methods=["GET"]),
        Route(account_mail.RESET_PATH, reset_post, methods=["POST"]),
        *([Route("/dev/mailbox", mailbox, methods=["GET"])] if dev_env else []),
    ]
