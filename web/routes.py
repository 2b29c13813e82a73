"""The web app's routes, served by the api face (runtime.faces.pages), every one through
`_page`: it gives the page the schema its operations run on, and answers a refused form
(403) or an API that cannot answer (503) with a page, never a 500."""

from __future__ import annotations

import functools
import logging

import strawberry
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from merci.i18n import N_
from web import admin, creator, everyone, partner, statements, supporter
from web.gql import Unavailable
from web.pages import Handler, Refused, error_page, lang_of
from web.words import say

log = logging.getLogger(__name__)


def _page(schema: strawberry.Schema, handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        request.scope["web_schema"] = schema
        try:
            return await handler(request)
        except Refused:
            return error_page(request, 403, say(lang_of(request), N_("This form did not come from this page of Merci;"
                                                                  " nothing was done. Go back, reload and try again.")))
        except Unavailable as exc:
            log.warning("web page %s: the API answered %s", request.url.path, exc.errors)
            return error_page(request, 503 if exc.status >= 500 else 400,
                              say(lang_of(request), N_("Merci cannot show this right now; try again in a moment.")))

    return endpoint


def routes(schema: strawberry.Schema) -> list[Route]:
    """The pages, their operations run on `schema` (both subgraphs merged: runtime.faces)."""
    table = [
        ("/", everyone.home, "GET"),
        ("/signup", everyone.signup_get, "GET"), ("/signup", everyone.signup_post, "POST"),
        ("/login", everyone.login_get, "GET"), ("/login", everyone.login_post, "POST"),
        ("/logout", everyone.logout_post, "POST"),
        ("/password", everyone.forgot_get, "GET"), ("/password", everyone.forgot_post, "POST"),
        ("/lang/{lang}", everyone.language, "GET"),
        ("/account", supporter.dashboard, "GET"),
        ("/account/budget", supporter.budget_post, "POST"),
        ("/account/months/{period}", supporter.statement, "GET"),
        ("/account/statements/{period}.pdf", statements.statement_pdf, "GET"),
        ("/account/subscriptions/{id}/{action}", supporter.subscription_post, "POST"),
        ("/account/subscribe", supporter.subscribe_get, "GET"),
        ("/account/subscribe", supporter.subscribe_post, "POST"),
        ("/account/password", supporter.password_post, "POST"),
        ("/account/export", supporter.export, "GET"),
        ("/account/delete", supporter.delete_get, "GET"), ("/account/delete", supporter.delete_post, "POST"),
        ("/topup", supporter.topup_get, "GET"), ("/topup", supporter.topup_post, "POST"),
        ("/creator", creator.dashboard, "GET"),
        ("/creator/sites", creator.add_site, "POST"),
        ("/creator/sites/{id}", creator.site, "GET"),
        ("/creator/sites/{id}/{action}", creator.site_post, "POST"),
        ("/creator/things", creator.add_thing, "POST"),
        ("/creator/things/{id}", creator.thing, "GET"),
        ("/creator/payouts", creator.payout, "POST"),
        ("/partner", partner.dashboard, "GET"),
        ("/partner/keys", partner.create_key, "POST"),
        ("/partner/keys/{id}/revoke", partner.revoke_key, "POST"),
        ("/partner/webhooks", partner.webhooks, "GET"), ("/partner/webhooks", partner.create_webhook, "POST"),
        ("/partner/deliveries/{id}/replay", partner.replay, "POST"),
        ("/partner/oauth", partner.oauth, "GET"), ("/partner/oauth", partner.create_client, "POST"),
        ("/partner/links/{id}/revoke", partner.revoke_link, "POST"),
        ("/admin", admin.page, "GET"),
        ("/admin/tenants", admin.create_tenant, "POST"),
        ("/admin/clicks/{id}/{decision}", admin.review, "POST"),
    ]
    return [Route(path, _page(schema, handler), methods=[method]) for path, handler, method in table]
