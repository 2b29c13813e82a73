"""The supporter's pages: /account (balance, budget, this month's clicks and projected
split, past months, subscriptions, the password), a month's statement, /topup,
subscribing to a thing (/account/subscribe), the data export and account deletion."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from graph.security import page_csp
from merci import i18n
from merci.i18n import N_
from merci.money import Money
from merci.stripe_api import checkout_origins
from web import charts, gql
from web.pages import (
    account_required,
    act,
    amount_of,
    error_page,
    finish,
    lang_of,
    messages,
    posted,
    redirect,
    render,
)
from web.words import say

PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
GLOBAL_ID = re.compile(r"^[A-Za-z0-9_-]{4,100}={0,2}$")  # what an id of the API looks like (a Relay id)
TERMS = (1, 3, 6, 12)  # months a subscription may last (the API's subscribe says which)
SUBSCRIPTION_ACTIONS = {"pause": ("PauseSubscription", "pauseSubscription", "paused"),
                        "resume": ("ResumeSubscription", "resumeSubscription", "resumed"),
                        "cancel": ("CancelSubscription", "cancelSubscription", "cancelled")}


def _money(m: dict[str, Any]) -> Money:
    return Money(int(m["amount"]), str(m["currency"]))


def split_chart(lang: str, month: dict[str, Any]) -> charts.Chart:
    """Who gets what of a month's budget: each thing's share, the fee, as the API tells it."""
    rows = []
    for share in month["shares"]:
        thing = share.get("thing")
        label = thing["title"] if thing else say(lang, N_("A thing no longer shown"))
        if share["inEscrow"]:
            label = say(lang, N_("%(title)s (held until its creator claims it)"), title=label)
        amount = _money(share["amount"])
        rows.append(charts.Bar(label, amount.minor, i18n.format_money(amount, lang),
                               "escrow" if share["inEscrow"] else "share"))
    fee = _money(month["fee"])
    rows.append(charts.Bar(say(lang, N_("Merci's fee")), fee.minor, i18n.format_money(fee, lang), "fee"))
    total = i18n.format_money(_money(month["charge"] if month["status"] == "CLOSED" else month["budget"]), lang)
    return charts.bars(f"split-{month['period']}", say(lang, N_("The split of %(period)s"), period=month["period"]),
                       say(lang, N_("%(total)s shared equally among %(n)s things, the fee included."),
                           total=total, n=i18n.format_number(len(month["shares"]), lang)), rows)


async def _dashboard(request: Request, *, status: int = 200, errors: list[str] | None = None) -> Response:
    data = (await gql.run(request, "AccountPage")).data
    me = data["me"]
    if me is None:
        return redirect(request, "/login", next="/account")
    lang = lang_of(request)
    month = me["month"]
    return render(request, "account.html", status=status, title=say(lang, N_("My account")), me=me, month=month,
                  chart=split_chart(lang, month) if month["shares"] else None, presets=data["budgetPresets"],
                  errors=errors or [], subscribed={s["thing"]["id"] for s in me["subscriptions"]["nodes"]
                                                    if s["thing"] and s["status"] in ("ACTIVE", "PAUSED")})


@account_required
async def dashboard(request: Request) -> Response:
    return await _dashboard(request)


@account_required
async def budget_post(request: Request) -> Response:
    data = await posted(request)
    lang = lang_of(request)
    amount = amount_of(data)
    if amount is None:
        return await _dashboard(request, status=400, errors=[say(lang, N_("Give the budget as an amount, e.g. 7.50."))])
    result = await gql.run(request, "SetMonthlyBudget", {"amount": amount})
    errors = result.user_errors("setMonthlyBudget")
    if errors:
        return await _dashboard(request, status=400, errors=messages(request, errors))
    return redirect(request, "/account", done="budget")


@account_required
async def statement(request: Request) -> Response:
    period = request.path_params["period"]
    lang = lang_of(request)
    if not PERIOD.match(period):
        return error_page(request, 404, say(lang, N_("This page does not exist.")))
    result = await gql.run(request, "MonthStatement", {"period": period})
    month = (result.data.get("me") or {}).get("month")
    if month is None:
        return error_page(request, 404, say(lang, N_("This page does not exist.")))
    return render(request, "statement.html", title=say(lang, N_("The month of %(period)s"), period=period),
                  month=month, chart=split_chart(lang, month) if month["shares"] else None)


async def _topup_page(request: Request, *, status: int = 200, errors: list[str] | None = None) -> Response:
    data = (await gql.run(request, "TopUpPage")).data
    cards = bool(data["topUpOptions"]["cards"])
    # With Stripe the supporter pays by card (Checkout), and comes back to ?paid=<top-up>:
    # the balance grows when Stripe's webhook confirms the payment, a moment later.
    response = render(request, "topup.html", status=status, title=say(lang_of(request), N_("Top up")),
                      me=data["me"], presets=data["topUpOptions"]["presets"] if cards else data["budgetPresets"],
                      cards=cards, paid=request.query_params.get("paid", "") if cards else "",
                      cancelled=bool(request.query_params.get("cancelled")) if cards else False,
                      key=secrets.token_urlsafe(16), errors=errors or [])
    if cards:  # the form is answered by a redirect to Stripe's checkout: its origin may take it
        origins = " ".join(checkout_origins(request.app.state.settings))
        response.headers["content-security-policy"] = page_csp(form_action=f"'self' {origins}")
    return response


@account_required
async def topup_get(request: Request) -> Response:
    """Where the button's "Top up" leads. The dev provider credits at once; a real
    provider (Stripe) adds its own step here."""
    return await _topup_page(request)


@account_required
async def topup_post(request: Request) -> Response:
    data = await posted(request)
    lang = lang_of(request)
    amount = amount_of(data)
    key = data.get("key", "")
    if amount is None or not key:
        return await _topup_page(request, status=400, errors=[say(lang, N_("Give the amount, e.g. 10 or 7.50."))])
    # The form's key makes a second submit of the same form the same top-up, not another one.
    if (await gql.run(request, "TopUpPage")).data["topUpOptions"]["cards"]:
        started = await gql.run(request, "StartTopUp", {"amount": amount, "key": f"web-{key}"[:100]})
        errors = started.user_errors("startTopUp")
        url = (started.data.get("startTopUp") or {}).get("checkoutUrl")
        if errors or not url:
            return await _topup_page(request, status=400, errors=messages(request, errors))
        return finish(request, RedirectResponse(url, status_code=303))  # to Stripe's checkout
    result = await gql.run(request, "TopUp", {"amount": amount, "key": f"web-{key}"[:100], "provider": "dev"})
    errors = result.user_errors("topUp")
    if errors:
        return await _topup_page(request, status=400, errors=messages(request, errors))
    return redirect(request, "/account", done="topup")


@account_required
async def subscription_post(request: Request) -> Response:
    await posted(request)
    action = SUBSCRIPTION_ACTIONS.get(request.path_params["action"])
    if action is None:
        return error_page(request, 404, say(lang_of(request), N_("This page does not exist.")))
    operation, root, done = action
    result = await gql.run(request, operation, {"id": request.path_params["id"]})
    errors = result.user_errors(root)
    if errors:
        return await _dashboard(request, status=400, errors=messages(request, errors))
    return redirect(request, "/account", done=done)


@account_required
async def password_post(request: Request) -> Response:
    """A new password, the current one given: every other session ends, this browser's
    session is replaced by the new one the API sets (its Set-Cookie, passed on)."""
    data = await posted(request)
    lang = lang_of(request)
    result = await gql.run(request, "ChangePassword", {"input": {
        "currentPassword": data.get("currentPassword", ""), "newPassword": data.get("newPassword", "")}})
    errors = result.user_errors("changePassword")
    if errors:
        said = [say(lang, N_("This is not your current password.")) if e.get("code") == "INVALID_CREDENTIALS"
                else m for e, m in zip(errors, messages(request, errors), strict=True)]
        return await _dashboard(request, status=400, errors=said)
    return redirect(request, "/account", done="password")


async def _subscribe_page(request: Request, *, status: int = 200, errors: list[str] | None = None,
                          thing: str = "", months: str = "3") -> Response:
    lang = lang_of(request)
    if not GLOBAL_ID.match(thing):
        return error_page(request, 404, say(lang, N_("This page does not exist.")))
    data = (await gql.run(request, "SubscribePage", {"id": thing})).data
    found, me = data.get("thing"), data.get("me")
    if found is None or me is None:
        return error_page(request, 404, say(lang, N_("This page does not exist.")))
    already = any(s["thing"] and s["thing"]["id"] == found["id"] and s["status"] in ("ACTIVE", "PAUSED")
                  for s in me["subscriptions"]["nodes"])
    return render(request, "subscribe.html", status=status, title=say(lang, N_("Subscribe to %(title)s"),
                                                                      title=found["title"]),
                  thing=found, me=me, already=already, terms=TERMS, months=months, errors=errors or [])


@account_required
async def subscribe_get(request: Request) -> Response:
    """Thank a thing every month for 1, 3, 6 or 12 months: where "Subscribe monthly"
    leads (/account's clicks, the /submit page of a thing)."""
    return await _subscribe_page(request, thing=request.query_params.get("thing", ""))


@account_required
async def subscribe_post(request: Request) -> Response:
    data = await posted(request)
    thing, months = data.get("thing", ""), data.get("months", "")
    if not GLOBAL_ID.match(thing):
        return error_page(request, 404, say(lang_of(request), N_("This page does not exist.")))
    if not months.isdigit() or int(months) not in TERMS:
        return await _subscribe_page(request, status=400, thing=thing, months="3",
                                     errors=[say(lang_of(request), N_("Choose 1, 3, 6 or 12 months."))])
    return await act(request, "Subscribe", {"thing": thing, "months": int(months)}, again=_subscribe_page,
                     to="/account", done="subscribed", thing=thing, months=months)


@account_required
async def export(request: Request) -> Response:
    """Everything Merci keeps about the account, as the API's dataExport, to download."""
    me = (await gql.run(request, "DataExport")).data["me"]
    body = json.dumps(me["dataExport"], indent=2, ensure_ascii=False, default=str)
    return finish(request, Response(body, media_type="application/json", headers={
        "Content-Disposition": f'attachment; filename="merci-{me["handle"]}.json"', "Cache-Control": "no-store"}))


async def _delete_page(request: Request, *, status: int = 200, errors: list[str] | None = None) -> Response:
    me = (await gql.run(request, "DeleteAccountPage")).data["me"]
    left = int(me["balance"]["amount"]) > 0 or int(me["earnings"]["amount"]) > 0
    return render(request, "delete.html", status=status, title=say(lang_of(request), N_("Delete my account")), me=me,
                  left=left, errors=errors or [])


@account_required
async def delete_get(request: Request) -> Response:
    return await _delete_page(request)


@account_required
async def delete_post(request: Request) -> Response:
    data = await posted(request)
    result = await gql.run(request, "DeleteAccount", {"input": {
        "password": data.get("password", ""), "forfeitBalance": data.get("forfeit") == "yes"}})
    errors = result.user_errors("deleteAccount")
    if errors:
        return await _delete_page(request, status=400, errors=messages(request, errors))
    return redirect(request, "/", done="deleted")
