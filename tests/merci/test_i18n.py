"""Languages (merci/i18n.py): the catalogs hold every string the code and templates
use (found by Babel's extractor, so a new untranslated string fails), plural forms
are CLDR's, numbers, money and dates are written each language's way, and the
choice of a language follows Accept-Language's q-values unless a page is told."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from babel import Locale

from merci import i18n
from merci.money import Money
from runtime import catalogs

CLDR_ORDER = ("zero", "one", "two", "few", "many", "other")  # gettext's plural indexes follow it


def test_the_catalogs_hold_every_string_the_code_uses() -> None:
    template = catalogs.extract()
    ids = {m.id if isinstance(m.id, str) else m.id[0] for m in template if m.id}
    # The extractor sees Python (N_ marks, gettext calls) and Jinja2 templates of both faces.
    assert {"Wrong email or password.", "Log in to Merci", "%(num)s click", "%(num)s site", "Relevance",
            "Everything else", "invalid url"} <= ids
    assert catalogs.problems(template) == []


def test_a_new_string_without_translation_fails(tmp_path: Path) -> None:
    (tmp_path / "api" / "embeds" / "templates").mkdir(parents=True)
    (tmp_path / "api" / "embeds" / "new.py").write_text('MESSAGE = N_("A sentence nobody translated")\n')
    (tmp_path / "api" / "embeds" / "templates" / "new.html").write_text(
        '<p>{{ ngettext("%(num)s new thing", "%(num)s new things", n) }}</p>\n')
    template = catalogs.extract()
    for m in catalogs.extract(tmp_path):
        template.add(m.id, locations=m.locations, flags=m.flags)
    found = catalogs.problems(template)
    for po in ("merci/locale/en/LC_MESSAGES/merci.po", "merci/locale/fr/LC_MESSAGES/merci.po"):
        assert f"{po}: missing 'A sentence nobody translated' (used in api/embeds/new.py)" in found
        assert f"{po}: missing '%(num)s new thing' (used in api/embeds/templates/new.html)" in found
    assert len(found) == 4


def test_an_untranslated_fuzzy_or_stale_entry_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fr = i18n.catalog_path("fr").read_text()
    broken = (fr.replace('msgstr "Mot de passe"', 'msgstr ""')
              .replace('msgid "Allow"', '#, fuzzy\nmsgid "Allow"')
              .replace('msgstr "par %(owner)s"', 'msgstr "par %(auteur)s"')
              + '\nmsgid "A string no code uses"\nmsgstr "Une chaîne orpheline"\n')
    (tmp_path / "fr" / "LC_MESSAGES").mkdir(parents=True)
    (tmp_path / "fr" / "LC_MESSAGES" / "merci.po").write_text(broken)
    (tmp_path / "en" / "LC_MESSAGES").mkdir(parents=True)
    (tmp_path / "en" / "LC_MESSAGES" / "merci.po").write_text(i18n.catalog_path("en").read_text())
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)
    found = "\n".join(catalogs.problems())
    assert "'Password' is not translated" in found
    assert "'Allow' is fuzzy" in found
    assert "'A string no code uses' is used nowhere" in found
    assert "'by %(owner)s'" in found and "auteur" in found  # placeholders must match the source's
    assert "merci/locale/en" not in found


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_plural_forms_are_cldrs(lang: str) -> None:
    rule = Locale.parse(lang).plural_form
    order = [tag for tag in CLDR_ORDER if tag in rule.tags or tag == "other"]
    plural = i18n.translations(lang).plural  # from the catalog's Plural-Forms header
    for n in [*range(0, 202), 1000, 10_000, 999_999, 1_000_000, 1_000_001, 2_000_000, 5_000_000, 10**9]:
        assert order[plural(n)] == rule(n), (lang, n)


def test_counts_in_english_and_french() -> None:
    def clicks(lang: str, n: int) -> str:
        return i18n.translations(lang).ngettext("%(num)s click", "%(num)s clicks", n) % {
            "num": i18n.format_number(n, lang)}

    def sites(lang: str, n: int) -> str:
        return i18n.translations(lang).ngettext("%(num)s site", "%(num)s sites", n) % {
            "num": i18n.format_number(n, lang)}

    assert [clicks("en", n) for n in (0, 1, 2)] == ["0 clicks", "1 click", "2 clicks"]
    assert [clicks("fr", n) for n in (0, 1, 2)] == ["0 clic", "1 clic", "2 clics"]  # 0 is singular in French
    assert [sites("en", n) for n in (0, 1, 2)] == ["0 sites", "1 site", "2 sites"]
    assert [sites("fr", n) for n in (0, 1, 2)] == ["0 site", "1 site", "2 sites"]
    assert clicks("en", 1234) == "1,234 clicks" and clicks("fr", 1234) == "1\u202f234 clics"
    assert clicks("fr", 2_000_000) == "2\u202f000\u202f000 de clics"  # CLDR's "many": exact millions


def test_numbers_money_and_dates_per_language() -> None:
    assert i18n.format_number(1234567, "en") == "1,234,567"
    assert i18n.format_number(1234567, "fr") == "1\u202f234\u202f567"
    assert i18n.format_money(Money(123456, "EUR"), "en") == "€1,234.56"
    assert i18n.format_money(Money(123456, "EUR"), "fr") == "1\u202f234,56\xa0€"
    assert i18n.format_money(Money(-250, "USD"), "en") == "-$2.50"
    assert i18n.format_money(Money(500, "JPY"), "en") == "¥500"  # no minor unit in yen
    assert i18n.format_date(date(2024, 3, 1), "en", "long") == "March 1, 2024"
    assert i18n.format_date(date(2024, 3, 1), "fr", "long") == "1 mars 2024"
    assert i18n.language_name("fr") == "Français" and i18n.language_name("en") == "English"


@pytest.mark.parametrize(("header", "expected"), [
    ("fr-CA,fr;q=0.9,en;q=0.8", "fr"),
    ("de-DE, en;q=0.8", "en"),  # German is not offered: the next one wanted
    ("en;q=0.5, fr;q=0.9", "fr"),  # q-values, not the order, decide
    ("fr;q=0.5, en;q=0.5", "fr"),  # equal q-values: the header's order
    ("fr;q=0, en;q=0.1", "en"),  # q=0 is "not French"
    ("FR-be", "fr"),  # tags are case-insensitive; a region falls back to its language
    ("*, fr;q=0.5", "fr"),  # the wildcard chooses nothing
    ("fr;q=abc, en;q=0.2", "en"),  # a malformed q-value counts as 0
    ("de, es;q=0.9", "en"),  # nothing offered: English
    ("", "en"),
    (",;,;q=,", "en"),
    ("x" * 10_000, "en"),
    ("de," * 100 + "fr", "en"),  # only the first entries are read
])
def test_accept_language(header: str, expected: str) -> None:
    assert i18n.negotiate(accept_language_header=header) == expected


def test_an_explicit_choice_wins() -> None:
    assert i18n.negotiate("en", accept_language_header="fr") == "en"
    assert i18n.negotiate("fr", "en", accept_language_header="en") == "fr"  # ?lang= before the cookie
    assert i18n.negotiate("", "fr", accept_language_header="en") == "fr"  # the cookie before the browser
    assert i18n.negotiate("fr_FR", accept_language_header="en") == "fr"
    assert i18n.negotiate("de", "klingon", accept_language_header="fr;q=0.3") == "fr"  # unknown: ignored
    assert i18n.negotiate("x" * 1000) == "en"


def test_unknown_language_has_no_catalog() -> None:
    with pytest.raises(ValueError):
        i18n.translations("de")
