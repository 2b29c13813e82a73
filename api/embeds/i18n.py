"""The embeds' words that the code picks at run time (a button's state, an OAuth
scope, the code of a refusal), marked for the catalogs (merci/locale), and the
click count. Words fixed in a template are in the template."""

from __future__ import annotations

from merci.i18n import N_, format_number, translations

LABELS = {  # the button as screen readers announce it, per state
    "logged_out": N_("Merci: log in to thank %(title)s"),
    "can_click": N_("Merci: thank %(title)s"),
    "clicked": N_("You thanked %(title)s this month"),
    "own": N_("%(title)s is yours"),
    "no_means": N_("Top up your Merci balance to thank %(title)s"),
}
STATES = {"clicked": N_("Thanked"), "own": N_("Yours"), "no_means": N_("Top up")}  # the button's own word
SCOPES = {"clicks:write": N_("send Merci clicks on your behalf, from your monthly budget")}
FORBIDDEN = N_("This request did not come from a Merci page; nothing was done.")
WRONG_LOGIN = N_("Wrong email or password.")
CLICKED = N_("Thank you! Your click counts this month.")

ERRORS = {  # userErrors a supporter may meet on a page, in the page's words
    "ALREADY_THIS_MONTH": N_("You already thanked it this month."),
    "OWN_THING": N_("This is your own thing: you cannot click it."),
    "NO_MEANS": N_("Top up your balance before clicking."),
    "EMAIL_NOT_VERIFIED": N_("Confirm your email address first: follow the link Merci mailed you."),
    "UNAVAILABLE": N_("Clicks cannot be accepted right now; try again."),
    "NOT_VISIBLE": N_("The button was not in plain view long enough; click it again."),
    "UNKNOWN_THING": N_("This thing does not exist."),
    "UNKNOWN_OWNER": N_("No Merci creator has this name."),
}


def count(lang: str, n: int) -> str:
    """`1 click`, `2 clicks`; `0 clic`, `1 000 000 de clics`."""
    return translations(lang).ngettext("%(num)s click", "%(num)s clicks", n) % {"num": format_number(n, lang)}


def say(lang: str, message: str, **values: str) -> str:
    """A message marked above, in `lang`, its placeholders filled."""
    text = translations(lang).gettext(message)
    return text % values if values else text


def error_message(lang: str, code: str, default: str) -> str:
    return say(lang, ERRORS[code]) if code in ERRORS else default
