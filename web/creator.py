"""The creator's pages: /creator (sites, things, earnings per month as a chart, payouts),
a site's page (its proof of ownership, each method's instructions, its directory
listing), a thing's page (copy-paste snippets: button, badge, rel="payment" link,
auto-submit URL)."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response

from merci import i18n
from merci.i18n import N_
from merci.money import Money
from web import charts, gql
from web.pages import account_required, act, amount_of, error_page, lang_of, messages, posted, redirect, render
from web.words import say

LANGUAGES = ("en", "fr", "de", "es", "it", "nl", "pt")


def earnings_chart(lang: str, months: list[dict[str, Any]]) -> charts.Chart:
    rows = []
    for m in reversed(months[:12]):  # oldest first, as one reads a year
        amount = Money(int(m["amount"]["amount"]), m["amount"]["currency"])
        rows.append(charts.Bar(m["period"], amount.minor, i18n.format_money(amount, lang)))
    return charts.bars("earnings", say(lang, N_("Earnings per month")),
                       say(lang, N_("What your things received in each closed month.")), rows)


async def _dashboard(request: Request, *, status: int = 200, errors: list[str] | None = None,
                     form: dict[str, str] | None = None) -> Response:
    data = (await gql.run(request, "CreatorPage")).data
    me = data["me"]
    lang = lang_of(request)
    return render(request, "creator.html", status=status, title=say(lang, N_("Creator")), me=me,
                  chart=earnings_chart(lang, me["earningsByMonth"]) if me["earningsByMonth"] else None,
                  threshold=data["payoutThreshold"], key=secrets.token_urlsafe(16), errors=errors or [],
                  form=form or {})


@account_required
async def dashboard(request: Request) -> Response:
    return await _dashboard(request)


@account_required
async def add_site(request: Request) -> Response:
    data = await posted(request)
    result = await gql.run(request, "AddSite", {"url": data.get("url", "")})
    errors = result.user_errors("addSite")
    if errors:
        return await _dashboard(request, status=400, errors=messages(request, errors),
                                form={"site_url": data.get("url", "")})
    site = result.data["addSite"]["site"]
    if site is None:
        return redirect(request, "/creator")
    site_id = site["id"]
    return redirect(request, f"/creator/sites/{quote(site_id, safe='')}", done="site")


async def _site(request: Request, *, status: int = 200, errors: list[str] | None = None,
                form: dict[str, str] | None = None) -> Response:
    lang = lang_of(request)
    data = (await gql.run(request, "SitePage", {"id": request.path_params["id"], "lang": lang})).data
    site = data.get("site")
    # Only its owner sees a site's proof (verification): anyone else gets no such page.
    if site is None or site.get("verification") is None or site["owner"]["handle"] != (data["me"] or {}).get("handle"):
        return error_page(request, 404, say(lang, N_("Nothing here: it does not exist, or it is not yours.")))
    listing = form or {"title": site["title"] or site["host"], "description": site["description"] or "",
                       "language": site["language"] or lang, "category": site["category"] or "",
                       "tags": ", ".join(site["tags"])}
    return render(request, "site.html", status=status, title=site["host"], site=site, v=site["verification"],
                  categories=data["categories"], languages=LANGUAGES, listing=listing, errors=errors or [])


@account_required
async def site(request: Request) -> Response:
    return await _site(request)


@account_required
async def site_post(request: Request) -> Response:
    """verify, list or unlist (`action`), each a mutation on the owner's own site."""
    data = await posted(request)
    site_id, action = request.path_params["id"], request.path_params["action"]
    path = f"/creator/sites/{quote(site_id, safe='')}"
    if action == "verify":
        return await act(request, "VerifySite", {"id": site_id}, again=_site, to=path, done="verifying")
    if action == "unlist":
        return await act(request, "UnlistSite", {"id": site_id}, again=_site, to=path, done="unlisted")
    if action != "list":
        return error_page(request, 404, say(lang_of(request), N_("This page does not exist.")))
    form = {k: data.get(k, "") for k in ("title", "description", "language", "category", "tags")}
    tags = [t.strip() for t in form["tags"].split(",") if t.strip()]
    return await act(request, "ListSite", {"input": {
        "siteId": site_id, "title": form["title"], "description": form["description"],
        "language": form["language"], "category": form["category"], "tags": tags}},
        again=_site, to=path, done="listed", form=form)


@account_required
async def add_thing(request: Request) -> Response:
    data = await posted(request)
    form = {"url": data.get("url", ""), "title": data.get("title", "")}
    result = await gql.run(request, "SubmitThing", {"input": {**form, "hidden": data.get("hidden") == "yes"}})
    errors = result.user_errors("submitThing")
    if errors:
        return await _dashboard(request, status=400, errors=messages(request, errors),
                                form={"thing_url": form["url"], "title": form["title"]})
    thing = result.data["submitThing"]["thing"]
    if thing is None:  # registered, but not yours to see: no verified site of yours covers it
        return redirect(request, "/creator", done="unclaimed")
    thing_id = thing["id"]
    return redirect(request, f"/creator/things/{quote(thing_id, safe='')}", done="thing")


@account_required
async def thing(request: Request) -> Response:
    lang = lang_of(request)
    data = (await gql.run(request, "ThingPage", {"id": request.path_params["id"]})).data
    found = data.get("thing")
    if found is None or (found.get("owner") or {}).get("handle") != (data["me"] or {}).get("handle"):
        return error_page(request, 404, say(lang, N_("Nothing here: it does not exist, or it is not yours.")))
    base = request.app.state.settings.public_url.rstrip("/")
    handle = data["me"]["handle"]
    submit = f"{base}/submit?" + urlencode({"url": found["url"], "title": found["title"]})
    snippets = {
        "button": f'<script src="{base}/embed/button.js" async></script>\n'
                  f'<a class="merci-button" href="{submit}">Merci</a>',
        "badge": f'<a href="{submit}"><img src="{base}/badge/thing/{quote(found["id"], safe="")}.svg" alt="Merci"></a>',
        "badge_md": f'[![Merci]({base}/badge/thing/{quote(found["id"], safe="")}.svg)]({submit})',
        "payment": f'<link rel="payment" href="{base}/submit?' + urlencode({"owner": handle}) + '">',
        "auto": f"{base}/submit/auto?" + urlencode({"user_id": handle, "url": found["url"], "title": found["title"]}),
    }
    return render(request, "thing.html", title=found["title"], thing=found, snippets=snippets)


@account_required
async def payout(request: Request) -> Response:
    data = await posted(request)
    key = data.get("key", "")
    everything = data.get("amount") in (None, "", "all")  # all that is available
    amount = None if everything else amount_of(data)
    if not key or (not everything and amount is None):
        lang = lang_of(request)
        return await _dashboard(request, status=400, errors=[say(lang, N_("Give the amount, e.g. 10 or 7.50."))])
    return await act(request, "RequestPayout", {"key": f"web-{key}"[:100], "amount": amount}, again=_dashboard,
                     to="/creator", done="payout")
