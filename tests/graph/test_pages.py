"""What every page shares (graph/pages.py): the language chosen for a request, and
templates that translate through the catalogs, escaping what fills a translation."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from starlette.requests import Request

from graph import pages
from merci.money import Money


def request(query: str = "", cookie: str = "", accept: str = "") -> Request:
    headers = [(b"accept-language", accept.encode())] + ([(b"cookie", cookie.encode())] if cookie else [])
    return Request({"type": "http", "method": "GET", "path": "/", "query_string": query.encode(), "headers": headers})


def test_the_explicit_choice_wins_over_the_browser() -> None:
    assert pages.choose_lang(request(accept="fr-CH, fr;q=0.9, en;q=0.8")) == "fr"
    assert pages.choose_lang(request(accept="en;q=0.4, fr;q=0.6")) == "fr"
    assert pages.choose_lang(request("lang=en", accept="fr")) == "en"
    assert pages.choose_lang(request(cookie="merci_lang=fr", accept="en")) == "fr"
    assert pages.choose_lang(request("lang=en", cookie="merci_lang=fr", accept="fr")) == "en"
    assert pages.choose_lang(request("lang=de", cookie="merci_lang=xx", accept="fr")) == "fr"
    assert pages.choose_lang(request()) == "en"


def test_answers_cached_for_everyone_follow_only_the_link() -> None:
    assert pages.choose_lang(request(cookie="merci_lang=fr", accept="fr"), browser=False) == "en"
    assert pages.choose_lang(request("lang=fr", accept="en"), browser=False) == "fr"


def test_templates_translate_and_escape(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_text(
        '<h1>{{ _("Log in to Merci") }}</h1>'
        '<p>{{ _("Your click was accepted: %(title)s gets a share of your monthly budget.", title=title) }}</p>'
        '<p>{{ ngettext("%(num)s site", "%(num)s sites", n) }} · {{ big|number }} · {{ amount|money }}'
        ' · {{ day|date("long") }}</p>')
    env = pages.templates(tmp_path)
    values = {"title": "<b>Post</b>", "n": 0, "big": 1234, "amount": Money(1050, "EUR"), "day": date(2024, 3, 1)}
    en = env.get_template("page.html").render(lang="en", **values)
    fr = env.get_template("page.html").render(lang="fr", **values)
    assert en == ("<h1>Log in to Merci</h1><p>Your click was accepted: &lt;b&gt;Post&lt;/b&gt; gets a share of your"
                  " monthly budget.</p><p>0 sites · 1,234 · €10.50 · March 1, 2024</p>")
    assert fr == ("<h1>Connexion à Merci</h1><p>Votre clic est accepté : &lt;b&gt;Post&lt;/b&gt; reçoit une part de"
                  " votre budget mensuel.</p><p>0 site · 1\u202f234 · 10,50\xa0€ · 1 mars 2024</p>")
    assert env.get_template("page.html").render(lang="xx", **values) == en  # never an error for a bad value
