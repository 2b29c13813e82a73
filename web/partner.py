"""The partner's pages (a tenant's admins): /partner (API keys: create with scopes, see
the secret once, revoke; this month's clicks and earnings of the tenant's things as a
chart), /partner/webhooks (endpoints, their delivery log, replay), /partner/oauth (OAuth
clients, the supporters who linked their account, revoke a link)."""

from __future__ import annotations

import functools
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from merci import i18n
from merci.i18n import N_
from merci.money import Money
from web import charts, gql
from web.pages import Handler, account_required, act, error_page, lang_of, messages, posted, render
from web.words import say

SCOPES = ("read", "things:write", "clicks:write", "sites:write", "webhooks:write", "analytics:read")
EVENTS = ("CLICK_ACCEPTED", "MONTH_CLOSED", "PAYOUT_SENT")


def admin_required(handler: Handler) -> Handler:
    """A tenant's admins only (or a platform admin): anyone else is told so (403)."""
    @account_required
    @functools.wraps(handler)
    async def guarded(request: Request) -> Response:
        who = await gql.principal(request)
        if not (who.tenant_admin or who.platform_admin):
            return error_page(request, 403, say(lang_of(request), N_("Only a platform's admins may see this page.")))
        return await handler(request)

    return guarded


def analytics_chart(lang: str, analytics: dict[str, Any]) -> charts.Chart:
    rows = []
    for n in analytics["things"]["nodes"]:
        title = (n.get("thing") or {}).get("title") or say(lang, N_("A thing no longer shown"))
        rows.append(charts.Bar(title, int(n["clicks"]), i18n.format_number(int(n["clicks"]), lang)))
    earnings = analytics.get("earnings")
    total = i18n.format_money(Money(int(earnings["amount"]), earnings["currency"]), lang) if earnings else "—"
    return charts.bars("analytics", say(lang, N_("Clicks on your creators' things in %(period)s"),
                                        period=analytics["period"]),
                       say(lang, N_("%(clicks)s clicks on %(things)s things; earnings %(earnings)s."),
                           clicks=i18n.format_number(int(analytics["clicks"]), lang),
                           things=i18n.format_number(int(analytics["thingsClicked"]), lang), earnings=total), rows)


async def _dashboard(request: Request, *, status: int = 200, errors: list[str] | None = None,
                     secret: str | None = None) -> Response:
    lang = lang_of(request)
    data = (await gql.run(request, "PartnerPage", {"period": None})).data
    analytics = data.get("partnerAnalytics")
    return render(request, "partner.html", status=status, title=say(lang, N_("Partner")), tenant=data["tenant"],
                  keys=data["apiKeys"]["nodes"], scopes=SCOPES, secret=secret, analytics=analytics,
                  chart=analytics_chart(lang, analytics) if analytics and analytics["things"]["nodes"] else None,
                  errors=errors or [])


@admin_required
async def dashboard(request: Request) -> Response:
    return await _dashboard(request)


@admin_required
async def create_key(request: Request) -> Response:
    data = await posted(request)
    form = await request.form()
    scopes = [s for s in form.getlist("scopes") if isinstance(s, str)]
    result = await gql.run(request, "CreateApiKey", {"name": data.get("name", ""), "scopes": scopes})
    errors = result.user_errors("createApiKey")
    if errors:
        return await _dashboard(request, status=400, errors=messages(request, errors))
    # The secret is shown this once, in this answer (not kept, not in a redirect's URL).
    return await _dashboard(request, secret=result.data["createApiKey"]["secret"])


@admin_required
async def revoke_key(request: Request) -> Response:
    await posted(request)
    return await act(request, "RevokeApiKey", {"id": request.path_params["id"]}, again=_dashboard, to="/partner",
                     done="key")


async def _webhooks(request: Request, *, status: int = 200, errors: list[str] | None = None,
                    secret: str | None = None, form: dict[str, str] | None = None) -> Response:
    data = (await gql.run(request, "WebhooksPage")).data
    return render(request, "webhooks.html", status=status, title=say(lang_of(request), N_("Webhooks")),
                  endpoints=data["webhookEndpoints"]["nodes"], events=EVENTS, secret=secret,
                  errors=errors or [], form=form or {})


@admin_required
async def webhooks(request: Request) -> Response:
    return await _webhooks(request)


@admin_required
async def create_webhook(request: Request) -> Response:
    data = await posted(request)
    form = await request.form()
    events = [e for e in form.getlist("events") if e in EVENTS]
    result = await gql.run(request, "CreateWebhookEndpoint", {
        "url": data.get("url", ""), "events": events, "description": data.get("description", "")})
    errors = result.user_errors("createWebhookEndpoint")
    if errors:
        return await _webhooks(request, status=400, errors=messages(request, errors),
                               form={"url": data.get("url", ""), "description": data.get("description", "")})
    return await _webhooks(request, secret=result.data["createWebhookEndpoint"]["secret"])


@admin_required
async def replay(request: Request) -> Response:
    await posted(request)
    return await act(request, "ReplayWebhookDelivery", {"id": request.path_params["id"]}, again=_webhooks,
                     to="/partner/webhooks", done="replayed")


async def _oauth(request: Request, *, status: int = 200, errors: list[str] | None = None,
                 secret: dict[str, str] | None = None) -> Response:
    data = (await gql.run(request, "OAuthPage")).data
    return render(request, "oauth.html", status=status, title=say(lang_of(request), N_("OAuth clients")),
                  clients=data["oauthClients"]["nodes"], links=data["linkedAccounts"]["nodes"], secret=secret,
                  errors=errors or [])


@admin_required
async def oauth(request: Request) -> Response:
    return await _oauth(request)


@admin_required
async def create_client(request: Request) -> Response:
    data = await posted(request)
    uris = [u.strip() for u in data.get("redirectUris", "").splitlines() if u.strip()]
    result = await gql.run(request, "CreateOAuthClient", {"name": data.get("name", ""), "uris": uris})
    errors = result.user_errors("createOAuthClient")
    if errors:
        return await _oauth(request, status=400, errors=messages(request, errors))
    created = result.data["createOAuthClient"]
    return await _oauth(request, secret={"clientId": created["oauthClient"]["clientId"],
                                         "clientSecret": created["clientSecret"]})


@admin_required
async def revoke_link(request: Request) -> Response:
    await posted(request)
    return await act(request, "RevokeLinkedAccount", {"id": request.path_params["id"]}, again=_oauth,
                     to="/partner/oauth", done="unlinked")
