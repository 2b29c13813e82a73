"""Merci's login page, as the button's popup or as a page on its own (`next=`).

In a popup, a successful login (or an existing Merci session) ends on a page that
hands a one-time grant to the window that opened it, which must be Merci's own
button iframe: the message is addressed to Merci's origin, so another site that
opens this page receives nothing."""

from __future__ import annotations

import secrets
from datetime import timedelta
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from api.embeds import web
from api.embeds.button import issue_grant
from api.embeds.i18n import FORBIDDEN, WRONG_LOGIN, say
from graph.ratelimit import client_ip
from merci import accounts
from merci.db import Scope, scoped
from merci.errors import UserError
from merci.ratelimit import guarded_login
from merci.tenants import DEFAULT_TENANT, tenant_id_by_slug


def safe_next(raw: str | None) -> str | None:
    """Only a path on Merci itself: never an open redirect."""
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc or not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return None
    return raw


def _form(request: Request, lang: str, *, status: int = 200, error: str | None = None,
          email: str = "", tenant: str = "") -> Response:
    # Login CSRF: a random cookie and a field derived from it (a double submit);
    # another site can make the browser send the cookie, not read it.
    settings = web.settings_of(request)
    cookie = request.cookies.get(web.LOGIN_COOKIE) or secrets.token_urlsafe(24)
    query = {k: v for k, v in web.params(request).items() if k in ("popup", "next", "lang", "tenant")}
    response = web.page("login.html", lang=lang, status=status, error=error, email=email,
                        tenant=tenant or query.get("tenant", ""), csrf=web.csrf_token(settings, cookie, "login"),
                        action="/embed/login?" + urlencode(query))
    response.set_cookie(web.LOGIN_COOKIE, cookie, max_age=3600, httponly=True, samesite="lax",
                        secure=settings.public_url.startswith("https://"), path="/embed/login")
    return response


async def _done(request: Request, lang: str, *, tenant_id: int, account_id: int, handle: str | None) -> Response:
    params = web.params(request)
    nxt = safe_next(params.get("next"))
    if params.get("popup") == "1":
        code = await issue_grant(request, tenant_id=tenant_id, account_id=account_id)
        return web.page("grant.html", lang=lang, code=code, handle=handle)
    # A page on its own (no popup to close): on to where it was asked to go, else the
    # account's page (the web app's /account).
    return RedirectResponse(nxt or "/account", status_code=303)


async def login_get(request: Request) -> Response:
    lang = web.choose_lang(request)
    who = await web.session(request)
    if who is not None:
        principal = who[0]
        assert principal.account_id is not None
        async with scoped(request.app.state.pool, principal.scope) as conn:
            handle = await accounts.handle_of(conn, account_id=principal.account_id)
        return await _done(request, lang, tenant_id=principal.tenant_id, account_id=principal.account_id,
                           handle=handle)
    return _form(request, lang)


async def login_post(request: Request) -> Response:
    lang = web.choose_lang(request)
    data = await web.form(request)
    cookie = request.cookies.get(web.LOGIN_COOKIE, "")
    settings = web.settings_of(request)
    if not web.same_origin(request) or not web.csrf_ok(settings, cookie, "login", data.get("csrf", "")):
        return web.error(lang, [UserError("FORBIDDEN", say(lang, FORBIDDEN))], status=403)
    slug = (data.get("tenant") or DEFAULT_TENANT).strip().lower()
    async with request.app.state.pool.acquire() as conn:  # tenants are public
        tenant_id = await tenant_id_by_slug(conn, slug)
    if tenant_id is None:
        return _form(request, lang, status=401, error=say(lang, WRONG_LOGIN), email=data.get("email", ""), tenant=slug)
    pool = request.app.state.pool
    try:  # (RateLimited, locked out or past the address's limit: a 429 page, graph.ratelimit)
        account_id, token = await guarded_login(
            request.app.state.limiter, lambda: scoped(pool, Scope(tenant_id)), tenant_id=tenant_id,
            email=data.get("email", ""), password=data.get("password", ""),
            ttl=timedelta(seconds=settings.token_ttl_seconds), ip=client_ip(request.scope))
        async with scoped(pool, Scope(tenant_id)) as conn:
            handle = await accounts.handle_of(conn, account_id=account_id)
    except UserError:
        return _form(request, lang, status=401, error=say(lang, WRONG_LOGIN), email=data.get("email", ""), tenant=slug)
    response = await _done(request, lang, tenant_id=tenant_id, account_id=account_id, handle=handle)
    web.set_session_cookie(response, settings, token)
    return response
