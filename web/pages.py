"""What every page of the web app shares: its templates, its answer (headers, cookies a
mutation set), CSRF for its forms, redirects that stay on Merci, and the guard of pages
that need a logged-in account. See the package docstring for the conventions."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from babel.numbers import format_percent
from jinja2 import pass_context
from jinja2.runtime import Context as JinjaContext
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from api.embeds import login
from api.embeds.web import csrf_ok, csrf_token, same_origin
from graph import pages
from merci import i18n
from merci.accounts import SESSION_COOKIE
from merci.money import Money
from web import gql, words

FORM_COOKIE = "merci_form"  # before login, what a form's CSRF token is bound to
CSRF_PURPOSE = "web"
env = pages.templates(Path(__file__).parent / "templates")


@pass_context
def _money(context: JinjaContext, m: Any) -> str:
    """Money from GraphQL (`{amount, currency}`) or merci.money.Money, in the page's language."""
    if isinstance(m, dict):
        m = Money(int(m["amount"]), str(m["currency"]))
    lang = context.get("lang")
    return i18n.format_money(m, lang if lang in i18n.LANGUAGES else i18n.DEFAULT)


env.filters["money"] = _money


@pass_context
def _percent_bps(context: JinjaContext, bps: int) -> str:
    """Basis points as the language writes a percentage: 12.5% in English, 12,5 % in French."""
    lang = context.get("lang")
    return format_percent(Decimal(bps) / 10000, decimal_quantization=False,
                          locale=lang if lang in i18n.LANGUAGES else i18n.DEFAULT)


env.filters["percent_bps"] = _percent_bps


def lang_of(request: Request) -> str:
    return pages.choose_lang(request)


def safe_next(raw: str | None, default: str = "/account") -> str:
    """A path on Merci itself, never another site (an open redirect): else `default`."""
    return login.safe_next(raw) or default


def _binding(request: Request) -> tuple[str, str | None]:
    """What this browser's CSRF tokens are bound to: its session, or a random form cookie
    (a new one to set, second)."""
    session = request.cookies.get(SESSION_COOKIE, "")
    if session.startswith("ms_") and request.scope.get("web_principal") is not None:
        return session, None
    cookie = request.cookies.get(FORM_COOKIE, "")
    if cookie:
        return cookie, None
    fresh = request.scope.get("web_form_cookie") or secrets.token_urlsafe(24)
    request.scope["web_form_cookie"] = fresh
    return fresh, fresh


def csrf(request: Request) -> str:
    return csrf_token(request.app.state.settings, _binding(request)[0], CSRF_PURPOSE)


class Refused(Exception):
    """A POST that did not come from a Merci page of this browser: nothing is done."""


async def posted(request: Request) -> dict[str, str]:
    """The form of a POST from one of Merci's pages in this browser, or Refused (403).
    Call it first: the principal (and so the token's binding) is resolved here."""
    await gql.principal(request)
    data = await request.form()
    out: dict[str, str] = {}
    for key, value in data.multi_items():
        if isinstance(value, str):
            out.setdefault(key, value.strip() if key not in ("password", "newPassword") else value)
    binding, fresh = _binding(request)
    if fresh is not None or not same_origin(request) or \
            not csrf_ok(request.app.state.settings, binding, CSRF_PURPOSE, out.get("csrf", "")):
        raise Refused()
    return out


def render(request: Request, template: str, *, status: int = 200, title: str = "", **context: Any) -> HTMLResponse:
    lang = lang_of(request)
    principal = request.scope.get("web_principal")
    here = request.url.path + ("?" + request.url.query if request.url.query else "")
    token = Markup('<input type="hidden" name="csrf" value="%s">') % csrf(request)
    html = env.get_template(template).render(
        lang=lang, other_lang="fr" if lang == "en" else "en", title=title, here=here, path=request.url.path,
        logged_in=principal is not None and principal.account_id is not None,
        is_tenant_admin=bool(principal and (principal.tenant_admin or principal.platform_admin)),
        is_platform_admin=bool(principal and principal.platform_admin),
        csrf_field=lambda: token, done=request.query_params.get("done", ""), dev=request.app.state.settings.dev_env,
        language_name=i18n.language_name, done_message=lambda word: words.done(lang, word), **context)
    response = HTMLResponse(html, status_code=status, headers={
        "Cache-Control": "no-store", "Content-Language": lang, "Vary": "Accept-Language, Cookie"})
    finish(request, response)
    return response


def finish(request: Request, response: Response) -> Response:
    """The cookies a mutation set, and the form cookie a token was bound to, on the answer."""
    for cookie in request.scope.get("web_cookies", ()):
        response.raw_headers.append((b"set-cookie", cookie))
    fresh = request.scope.get("web_form_cookie")
    if fresh and request.cookies.get(FORM_COOKIE) != fresh:
        response.set_cookie(FORM_COOKIE, fresh, max_age=86400, httponly=True, samesite="lax", path="/",
                            secure=request.app.state.settings.public_url.startswith("https://"))
    return response


def redirect(request: Request, path: str, **query: str) -> Response:
    """303 to `path` on Merci (POST-redirect-GET), with `query` (e.g. done=...)."""
    target = path + ("?" + urlencode(query) if query else "")
    return finish(request, RedirectResponse(target, status_code=303))


def error_page(request: Request, status: int, message: str) -> Response:
    return render(request, "error.html", status=status, title=message, message=message)


Handler = Callable[[Request], Awaitable[Response]]
Again = Callable[..., Awaitable[Response]]  # a page's renderer: (request, status=, errors=, ...)


async def act(request: Request, operation: str, variables: dict[str, Any], *, again: Again, to: str,
              done: str, **shown: Any) -> Response:
    """Run mutation `operation`: its userErrors show on the page again (`again`, 400, with
    `shown`), nothing changed; else 303 to `to` saying `done` (POST-redirect-GET)."""
    errors = (await gql.run(request, operation, variables)).user_errors()
    if errors:
        return await again(request, status=400, errors=messages(request, errors), **shown)
    return redirect(request, to, done=done)


def account_required(handler: Handler) -> Handler:
    """The page needs a logged-in account: anyone else is sent to log in, then back."""
    @functools.wraps(handler)
    async def guarded(request: Request) -> Response:
        who = await gql.principal(request)
        if who.account_id is None:
            if request.method != "GET":
                return redirect(request, "/login")
            return redirect(request, "/login", next=request.url.path)
        return await handler(request)

    return guarded


def messages(request: Request, errors: list[dict[str, Any]]) -> list[str]:
    """userErrors as sentences in the page's language: the codes web.words knows in its
    words, any other in the API's own message."""
    return [words.error(lang_of(request), e) for e in errors]


def amount_of(data: dict[str, str]) -> int | None:
    """A form's amount in minor units: a preset's radio (`amount`), or `custom` typed in."""
    choice = data.get("amount", "")
    if choice.isdigit():
        return int(choice)
    return minor_units(data.get("custom", "")) if choice == "custom" else None


def minor_units(text: str) -> int | None:
    """An amount as people type it (`5`, `7.50`, `7,5`, `12 €`) in minor units, or None."""
    cleaned = text.replace("€", "").replace("\u00a0", "").replace(" ", "").replace(",", ".")
    whole, dot, cents = cleaned.partition(".")
    if not whole.isdigit() or len(whole) > 7 or (dot and (not cents.isdigit() or len(cents) > 2)):
        return None
    return int(whole) * 100 + (int(cents.ljust(2, "0")) if dot else 0)
