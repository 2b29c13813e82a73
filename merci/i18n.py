"""Languages: gettext catalogs, CLDR plural rules, numbers, money and dates per
locale (all through Babel), and the choice of a language for a request.

The catalogs are `merci/locale/<lang>/LC_MESSAGES/merci.po`, one domain for every
face, the workers and the web app (all of them may import `merci`). Source strings
are English; the English catalog leaves them untranslated (gettext then answers the
source string) and exists for its plural rule and for editing the English wording.
There are no `.mo` files: each catalog is read from its `.po` the first time a
language is asked for and compiled in memory, as Liberapay does, so a source
checkout, `pip install -e .` and the wheel all work with no build step, and no
compiled file can lag behind its source. `merci catalogs update` brings the
catalogs up to date with the code, `merci catalogs check` (and a test) fails on a
string missing from a catalog.

Plural forms are the `Plural-Forms` header of each catalog, written from CLDR by
Babel: French counts 0 and 1 as singular ("0 clic") and has a third form for
exact millions ("1 000 000 de clics").
"""

from __future__ import annotations

import functools
import io
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from babel import Locale, negotiate_locale
from babel.dates import format_date as _format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency, format_decimal, get_currency_precision
from babel.support import Translations

from merci.money import Money

LANGUAGES = ("en", "fr")
DEFAULT = "en"
DOMAIN = "merci"
LOCALE_DIR = Path(__file__).parent / "locale"
LANG_COOKIE = "merci_lang"  # the explicit choice a page remembers (the web app's language switch)
MAX_ACCEPT = 32  # entries of Accept-Language considered; a longer header is a client's mistake or abuse


def N_(message: str) -> str:
    """Marks a string for the catalogs where it is defined; translated where it is shown."""
    return message


def catalog_path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def translations(lang: str) -> Translations:
    """The language's catalog as gettext translations (gettext, ngettext, pgettext)."""
    if lang not in LANGUAGES:
        raise ValueError(f"no catalog for {lang!r}")
    with catalog_path(lang).open("rb") as po:
        catalog = read_po(po, locale=lang, domain=DOMAIN)
    mo = io.BytesIO()
    write_mo(mo, catalog)  # fuzzy entries are left out: they wait for a translator's review
    mo.seek(0)
    return Translations(mo, domain=DOMAIN)


def _match(tags: list[str]) -> str | None:
    """The first supported language among tags (`fr-CA` and `fr_CA` give `fr`)."""
    preferred = [tag.strip().replace("_", "-").lower() for tag in tags if tag and tag.strip()]
    found = negotiate_locale(preferred, LANGUAGES, sep="-")
    return found.lower() if found else None


def accept_language(header: str) -> list[str]:
    """The header's language tags, most wanted first (RFC 9110 §12.5.4: q-values,
    ties in the header's order, q=0 and `*` mean nothing to choose)."""
    ranked: list[tuple[float, str]] = []
    for part in header.split(",")[:MAX_ACCEPT]:
        tag, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        if tag and tag != "*" and 0 < q <= 1:
            ranked.append((q, tag))
    ranked.sort(key=lambda x: -x[0])  # stable: equal q-values keep the header's order
    return [tag for _, tag in ranked]


def negotiate(*explicit: str, accept_language_header: str = "") -> str:
    """A supported language: the first explicit choice that names one (a `lang`
    parameter, then a remembered cookie), else the browser's Accept-Language,
    else English."""
    for asked in explicit:
        found = _match([asked[:35]])  # the longest sensible language tag
        if found:
            return found
    return _match(accept_language(accept_language_header)) or DEFAULT


def language_name(lang: str) -> str:
    """A language's name in itself, as a language switch shows it ("Français")."""
    name = Locale.parse(lang).get_display_name(lang) or lang
    return name[:1].upper() + name[1:]


def format_number(n: int | Decimal, lang: str) -> str:
    """1,234 in English, 1 234 in French (a narrow no-break space)."""
    return format_decimal(n, locale=lang)


def format_money(m: Money, lang: str) -> str:
    """€10.50 in English, 10,50 € in French; minor units per ISO 4217 (cents for EUR)."""
    return format_currency(Decimal(m.minor).scaleb(-get_currency_precision(m.currency)), m.currency, locale=lang)


def format_date(d: date | datetime, lang: str, form: str = "medium") -> str:
    """A date as the language writes it: `form` is short, medium, long, full or a CLDR pattern."""
    return _format_date(d, format=form, locale=lang)

