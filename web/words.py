"""The web app's words picked at run time, marked for the catalogs: what a page says
after a form did its work (`?done=`), and userErrors by code in the reader's language
(any code not here keeps the API's own English message)."""

from __future__ import annotations

from typing import Any

from merci.i18n import N_, translations

DONE = {
    "budget": N_("Your monthly budget is saved."),
    "topup": N_("Your balance was topped up."),
    "paused": N_("The subscription is paused."),
    "resumed": N_("The subscription is running again."),
    "cancelled": N_("The subscription is cancelled."),
    "subscribed": N_("You subscribed: the thing is thanked this month and each month of the term."),
    "password": N_("Your password is changed. Every other session is logged out."),
    "site": N_("The site was added: now prove it is yours."),
    "verifying": N_("Merci is checking your site; this page shows the outcome."),
    "listed": N_("The site is listed in the directory."),
    "unlisted": N_("The site is no longer listed."),
    "thing": N_("The thing is registered."),
    "unclaimed": N_("The thing is registered, unclaimed: it becomes yours once a site you verified covers it."),
    "payout": N_("Your payout was requested."),
    "key": N_("The API key is revoked."),
    "webhook": N_("The webhook endpoint is saved."),
    "replayed": N_("The delivery is sent again."),
    "client": N_("The OAuth client is created."),
    "unlinked": N_("The linked account is revoked."),
    "reviewed": N_("The click is reviewed."),
    "tenant": N_("The tenant is created."),
    "loggedout": N_("You are logged out."),
    "deleted": N_("Your account is deleted."),
    "mailed": N_("If an account has this address, a link is on its way to it."),
}

ERRORS = {
    "INVALID_CREDENTIALS": N_("Wrong email or password."),
    "UNAUTHENTICATED": N_("Log in first."),
    "FORBIDDEN": N_("You may not do this."),
    "NOT_FOUND": N_("Nothing here: it does not exist, or it is not yours."),
    "HANDLE_TAKEN": N_("This name is taken: choose another."),
    "EMAIL_TAKEN": N_("An account already has this email address."),
    "INVALID_EMAIL": N_("This is not an email address."),
    "WEAK_PASSWORD": N_("This password is too easy to guess: choose a longer one."),
    "PASSWORD_TOO_LONG": N_("This password is too long."),
    "INVALID_URL": N_("This is not a web address Merci can use (http or https, a public host)."),
    "SITE_EXISTS": N_("This site is already registered."),
    "DUPLICATE_SITE": N_("This site is already registered."),
    "NOT_VERIFIED": N_("Prove the site is yours first."),
    "INVALID_TITLE": N_("Give a title."),
    "INVALID_DESCRIPTION": N_("The description must be 5 to 1000 characters long."),
    "INVALID_LANGUAGE": N_("Choose a language."),
    "INVALID_CATEGORY": N_("Choose a category."),
    "UNKNOWN_CATEGORY": N_("Choose a category."),
    "INSUFFICIENT_EARNINGS": N_("Your available earnings are below the payout threshold."),
    "AMOUNT_TOO_LARGE": N_("This amount is too large."),
    "BUDGET_TOO_SMALL": N_("The amount is at least 2.00."),
    "PROVIDER_UNAVAILABLE": N_("This payment provider is not available here."),
    "INVALID_AMOUNT": N_("This amount is not valid."),
    "EMAIL_NOT_VERIFIED": N_("Confirm your email address first: follow the link Merci mailed you."),
    "ALREADY_SUBSCRIBED": N_("You already subscribe to this thing."),
    "OWN_THING": N_("This is your own thing: you cannot subscribe to it."),
    "UNKNOWN_THING": N_("Nothing here: it does not exist, or it is not yours."),
    "INVALID_TERM": N_("Choose 1, 3, 6 or 12 months."),
    "UNAVAILABLE": N_("Merci cannot do this right now; try again in a moment."),
}


def say(lang: str, message: str, **values: Any) -> str:
    text = translations(lang).gettext(message)
    return text % values if values else text


def done(lang: str, word: str) -> str | None:
    return say(lang, DONE[word]) if word in DONE else None


def error(lang: str, err: dict[str, Any]) -> str:
    code = str(err.get("code") or "")
    return say(lang, ERRORS[code]) if code in ERRORS else str(err.get("message") or code)
