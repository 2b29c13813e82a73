"""Pages for everyone: the home page (what Merci is, how the money moves), sign-up, log
in and out, the forgotten password, and the language switch. Email verification and
the new password itself are the pages the mails link to (api.accounts.pages)."""

from __future__ import annotations

from decimal import Decimal

from starlette.requests import Request
from starlette.responses import Response

from merci import i18n
from merci.i18n import N_
from merci.money import Money
from web import gql
from web.pages import account_required, error_page, finish, lang_of, messages, posted, redirect, render, safe_next
from web.words import say


async def home(request: Request) -> Response:
    data = (await gql.run(request, "Home")).data
    fee_bps = int((data.get("tenant") or {}).get("feeBps", 1000))
    budget = Money(int(data["defaultBudget"]["amount"]), data["defaultBudget"]["currency"])
    fee = budget.minor * fee_bps // 10000  # an illustration of the rule (merci.split), rounded alike
    example = {"budget": budget, "fee": Money(fee, budget.currency),
               "share": Money((budget.minor - fee) // 4, budget.currency)}
    return render(request, "home.html", title=say(lang_of(request), N_("Thank the web, one click at a time")),
                  me=data.get("me"), presets=data["budgetPresets"], example=example,
                  fee_percent=i18n.format_number(Decimal(fee_bps) / 100, lang_of(request)))


async def signup_get(request: Request) -> Response:
    if (await gql.principal(request)).account_id is not None:
        return redirect(request, "/account")
    return render(request, "signup.html", title=say(lang_of(request), N_("Sign up")), form={},
                  sent=request.query_params.get("sent") == "1")


async def signup_post(request: Request) -> Response:
    data = await posted(request)
    form = {k: data.get(k, "") for k in ("email", "handle", "displayName")}
    result = await gql.run(request, "SignUp", {"input": {**form, "password": data.get("password", ""),
                                                          "displayName": form["displayName"] or None}})
    errors = result.user_errors("signUp")
    if errors:
        return render(request, "signup.html", status=400, title=say(lang_of(request), N_("Sign up")), form=form,
                      sent=False, errors=messages(request, errors))
    return redirect(request, "/signup", sent="1")


async def login_get(request: Request) -> Response:
    nxt = safe_next(request.query_params.get("next"))
    if (await gql.principal(request)).account_id is not None:
        return redirect(request, nxt)
    return render(request, "login.html", title=say(lang_of(request), N_("Log in")), email="", tenant="", next=nxt)


async def login_post(request: Request) -> Response:
    data = await posted(request)
    nxt = safe_next(data.get("next"))
    tenant = data.get("tenant", "").lower()
    try:
        result = await gql.run(request, "LogIn", {"input": {"email": data.get("email", ""),
                                                             "password": data.get("password", "")}},
                               tenant=tenant or None)
        errors = result.user_errors("logIn")
    except gql.UnknownTenant:  # answered as a wrong password: the same page, the same words
        errors = [{"code": "INVALID_CREDENTIALS", "message": "wrong email or password"}]
    if errors:
        return render(request, "login.html", status=401, title=say(lang_of(request), N_("Log in")),
                      email=data.get("email", ""), tenant=tenant, next=nxt, errors=messages(request, errors))
    return redirect(request, nxt)


@account_required
async def logout_post(request: Request) -> Response:
    await posted(request)
    await gql.run(request, "LogOut")
    return redirect(request, "/", done="loggedout")


async def forgot_get(request: Request) -> Response:
    return render(request, "forgot.html", title=say(lang_of(request), N_("Forgot your password?")), email="")


async def forgot_post(request: Request) -> Response:
    data = await posted(request)
    email = data.get("email", "")
    operation, root = ("ResendVerification", "resendVerification") if data.get("what") == "verify" \
        else ("RequestPasswordReset", "requestPasswordReset")
    result = await gql.run(request, operation, {"input": {"email": email}})
    errors = result.user_errors(root)
    if errors:
        return render(request, "forgot.html", status=400, title=say(lang_of(request), N_("Forgot your password?")),
                      email=email, errors=messages(request, errors))
    return redirect(request, "/password", done="mailed")


async def language(request: Request) -> Response:
    """/lang/{lang}?next=: remember the reader's choice (a cookie), then back to the page.
    Changing nothing but the reader's own preference, a GET is right for it."""
    lang = request.path_params["lang"]
    if lang not in i18n.LANGUAGES:
        return error_page(request, 404, say(lang_of(request), N_("This page does not exist.")))
    nxt = safe_next(request.query_params.get("next"), default="/")
    response = finish(request, redirect(request, _without_lang(nxt)))
    response.set_cookie(i18n.LANG_COOKIE, lang, max_age=365 * 86400, httponly=True, samesite="lax", path="/",
                        secure=request.app.state.settings.public_url.startswith("https://"))
    return response


def _without_lang(path: str) -> str:
    """`next` without a `lang=` of its own, which would outvote the choice just made."""
    base, _, query = path.partition("?")
    kept = "&".join(p for p in query.split("&") if p and not p.startswith("lang="))
    return base + ("?" + kept if kept else "")
