"""The platform admins' page, /admin: create a tenant (a partner platform, with its
first admin), and the review queue of clicks the fraud rules held (release or reject)."""

from __future__ import annotations

import functools

from starlette.requests import Request
from starlette.responses import Response

from merci.i18n import N_
from web import gql
from web.pages import Handler, account_required, act, error_page, lang_of, posted, render
from web.words import say

STATUSES = ("HELD", "RELEASED", "REJECTED")
DECISIONS = {"release": "RELEASE", "reject": "REJECT"}


def platform_admin_required(handler: Handler) -> Handler:
    @account_required
    @functools.wraps(handler)
    async def guarded(request: Request) -> Response:
        if not (await gql.principal(request)).platform_admin:
            return error_page(request, 403, say(lang_of(request), N_("Only Merci's admins may see this page.")))
        return await handler(request)

    return guarded


def _percent_bps(text: str) -> int | None:
    """`10` or `12.5` (percent) in basis points; None if it is not a percentage."""
    try:
        value = float(text.replace(",", "."))
    except ValueError:
        return None
    return round(value * 100) if 0 <= value <= 100 else None


async def _page(request: Request, *, status: int = 200, errors: list[str] | None = None,
                form: dict[str, str] | None = None) -> Response:
    shown = request.query_params.get("status", "HELD")
    shown = shown if shown in STATUSES else "HELD"
    after = request.query_params.get("after") or None  # the tenants' next page
    data = (await gql.run(request, "AdminPage", {"status": shown, "after": after})).data
    return render(request, "admin.html", status=status, title=say(lang_of(request), N_("Admin")),
                  flagged=data["flaggedClicks"], shown=shown, statuses=STATUSES, errors=errors or [],
                  tenants=data["tenants"],
                  form=form or {"feeBps": "10", "partnerShareBps": "0"})


@platform_admin_required
async def page(request: Request) -> Response:
    return await _page(request)


@platform_admin_required
async def create_tenant(request: Request) -> Response:
    data = await posted(request)
    form = {k: data.get(k, "") for k in ("slug", "name", "feeBps", "partnerShareBps", "email", "handle")}
    fee, share = _percent_bps(form["feeBps"]), _percent_bps(form["partnerShareBps"])
    if fee is None or share is None:
        return await _page(request, status=400, form=form,
                           errors=[say(lang_of(request), N_("Give the fee and the share as percentages, e.g. 10."))])
    admin = None
    if form["email"] or form["handle"]:
        admin = {"email": form["email"], "handle": form["handle"], "password": data.get("password", "")}
    return await act(request, "CreateTenant", {"input": {
        "slug": form["slug"], "name": form["name"], "feeBps": fee, "partnerShareBps": share, "admin": admin}},
        again=_page, to="/admin", done="tenant", form=form)


@platform_admin_required
async def review(request: Request) -> Response:
    await posted(request)
    decision = DECISIONS.get(request.path_params["decision"])
    if decision is None:
        return error_page(request, 404, say(lang_of(request), N_("This page does not exist.")))
    return await act(request, "ReviewFlaggedClick", {"id": request.path_params["id"], "decision": decision},
                     again=_page, to="/admin", done="reviewed")
