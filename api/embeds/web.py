"""What Merci's server-rendered pages share: templates and languages, the caller's
session from cookies, CSRF tokens and origin checks, and security headers.

Two cookies carry a session. `merci_session` (SameSite=Lax) is Merci's own, sent
only when Merci is the site in the address bar. The button lives in an iframe on
other sites, where browsers now block third-party cookies; it gets `merci_embed`,
a partitioned cookie (CHIPS) keyed to the embedding site, which only these pages
read, never /graphql. Any state change made with a cookie here checks both the
request's Origin and a CSRF token derived from that very session.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from graph import cors, pages
from graph.security import page_csp
from merci import accounts
from merci.accounts import SESSION_COOKIE, Principal
from merci.config import Settings
from merci.db import Scope, scoped
from merci.tenants import default_tenant_id

EMBED_COOKIE = "merci_embed"
LOGIN_COOKIE = "merci_login_csrf"
env = pages.templates(Path(__file__).parent / "templates")


def choose_lang(request: Request) -> str:
    return pages.choose_lang(request)


def settings_of(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def session(request: Request, *, embedded: bool = False) -> tuple[Principal, str] | None:
    """The logged-in caller and their session token, from the cookie this context gets."""
    names = (EMBED_COOKIE, SESSION_COOKIE) if embedded else (SESSION_COOKIE, EMBED_COOKIE)
    for name in names:
        token = request.cookies.get(name)
        tenant_id = accounts.token_tenant(token or "")
        if not token or tenant_id is None or not token.startswith("ms_"):
            continue
        async with scoped(request.app.state.pool, Scope(tenant_id)) as conn:
            principal = await accounts.resolve_session(conn, token=token)
        if principal is not None and principal.account_id is not None:
            return principal, token
    return None


async def anonymous_scope(request: Request) -> Scope:
    """The public site's tenant: an anonymous visitor reads public rows in its scope."""
    found = getattr(request.app.state, "embed_default_tenant", None)
    if found is None:
        async with request.app.state.pool.acquire() as conn:  # tenants are public by policy
            found = await default_tenant_id(conn)
        request.app.state.embed_default_tenant = found
    return Scope(int(found))


def csrf_token(settings: Settings, binding: str, purpose: str) -> str:
    """The one CSRF token of Merci's pages: bound to a secret of the browser's (its session
    token; before login, the login page's own cookie) and to what it protects, so useless
    to anyone without both. Another site can make the browser send the cookie, not read it."""
    digest = hashlib.sha256(binding.encode()).hexdigest()
    return hmac.new(settings.secret_key.encode(), f"{purpose}:{digest}".encode(), hashlib.sha256).hexdigest()


def csrf_ok(settings: Settings, binding: str, purpose: str, given: str) -> bool:
    return bool(binding) and hmac.compare_digest(csrf_token(settings, binding, purpose), given or "")


def own_origins(request: Request) -> set[str]:
    return set(cors.own_origins(request.scope, settings_of(request).public_url))


def same_origin(request: Request) -> bool:
    """A POST made by one of Merci's own pages (the iframe, the popup, /submit).

    Browsers send Origin on every cross-site POST; a request without it and
    without a Referer is refused rather than trusted."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        referer = urlsplit(request.headers.get("referer", ""))
        origin = f"{referer.scheme}://{referer.netloc}" if referer.netloc else None
    return origin is not None and origin in own_origins(request)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def page(template: str, *, lang: str, status: int = 200, form_action: str = "'self'",
         headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
    """A rendered page. Its security headers are the shell's (graph.security: scripts only
    from Merci, framing refused but for the button); `form_action` widens where its form
    may post (the OAuth consent, to the client's redirect URI)."""
    html = env.get_template(template).render(lang=lang, **context)
    base = {"Cache-Control": "no-store", "Content-Language": lang, "Vary": "Accept-Language, Cookie"}
    if form_action != "'self'":
        base["Content-Security-Policy"] = page_csp(form_action=form_action)
    return HTMLResponse(html, status_code=status, headers=base | (headers or {}))


def error(lang: str, errors: list[Any], *, status: int, embedded: bool = False) -> HTMLResponse:
    """A page listing what is wrong (each error's code, parameter and message)."""
    if embedded:  # inside the button's iframe, on someone else's page
        return page("error_frame.html", lang=lang, status=status, errors=errors)
    return page("error.html", lang=lang, status=status, errors=errors)


def set_session_cookie(response: Response, settings: Settings, token: str) -> None:
    """Merci's own session cookie, as the GraphQL logIn sets it."""
    response.set_cookie(SESSION_COOKIE, token, max_age=settings.token_ttl_seconds, httponly=True,
                        samesite="lax", secure=settings.public_url.startswith("https://"), path="/")


def set_embed_cookie(response: Response, settings: Settings, token: str) -> None:
    # SameSite=None needs Secure; browsers accept Secure cookies from http://localhost
    # and 127.0.0.1 too, so development works the same way. Written by hand: the
    # standard library knows `Partitioned` only from Python 3.14.
    assert token.replace("_", "").replace("-", "").isalnum()  # nothing to quote in a token
    response.headers.append("set-cookie", f"{EMBED_COOKIE}={token}; Max-Age={settings.token_ttl_seconds}; Path=/;"
                                          " HttpOnly; Secure; SameSite=None; Partitioned")


def params(request: Request) -> dict[str, str]:
    """Query parameters, the first of each name (a repeated one cannot smuggle a second value)."""
    out: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        out.setdefault(key, value)
    return out


async def form(request: Request) -> dict[str, str]:
    data = await request.form()
    out: dict[str, str] = {}
    for key, value in data.multi_items():
        if isinstance(value, str):
            out.setdefault(key, value)
    return out
