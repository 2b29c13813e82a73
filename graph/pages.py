"""What every server-rendered page shares: its language, chosen for the request, and
Jinja2 templates that speak it through the catalogs (merci.i18n).

In a template, `_("…")` and `ngettext("…", "…", n)` translate into the page's `lang`
(a variable every page passes) and take `%(name)s` placeholders as keywords, escaped
like any value; `ngettext` fills `%(num)s` with n written the language's way. The
filters `number`, `money` and `date` format per language too. Babel's Jinja2
extractor finds these calls for the catalogs (babel.cfg).
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from jinja2.runtime import Context
from markupsafe import Markup
from starlette.requests import Request

from merci import i18n
from merci.money import Money

# The frame every page Merci shows a person wears (the web app's base.html, the
# directory's page): its skip link, header, nav, footer, colours and focus ring, once.
# Templates put `{{ frame_css }}` first in their <style>.
FRAME_CSS = Markup("""*, *::before, *::after { box-sizing: border-box; }
    body { font: 16px/1.5 system-ui, sans-serif; margin: 0; color: #1d1d1f; background: #fff;
           overflow-wrap: break-word; }
    a { color: #0b57a4; }
    .skip { position: absolute; left: -999px; top: 0; background: #fff; padding: .5rem; z-index: 10; }
    .skip:focus { left: .5rem; }
    header.site, footer.site { background: #f4f1ee; padding: .6rem 1rem; }
    header.site .wrap { display: flex; flex-wrap: wrap; gap: .4rem 1rem; align-items: center;
                        justify-content: space-between; }
    header.site .brand { font-weight: 700; font-size: 1.25rem; color: #b0303b; text-decoration: none; }
    header.site nav ul { list-style: none; margin: 0; padding: 0; display: flex; flex-wrap: wrap; gap: .3rem .9rem;
                         align-items: center; }
    nav a[aria-current="page"] { font-weight: 700; }
    .wrap { max-width: 52rem; margin: 0 auto; }
    main.wrap { padding: 1rem; }
    h1 { font-size: 1.6rem; line-height: 1.25; margin: .4rem 0 1rem; }
    a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible, textarea:focus-visible,
    summary:focus-visible, .skip:focus { outline: 3px solid #1a5fb4; outline-offset: 2px; }""")


def choose_lang(request: Request, *, browser: bool = True) -> str:
    """The page's language: `?lang=`, then the remembered choice (cookie), then the
    browser's Accept-Language. `browser=False` for answers cached alike for everyone
    (badges, oEmbed): only `?lang=` counts there."""
    asked = request.query_params.get("lang", "")
    if not browser:
        return i18n.negotiate(asked)
    return i18n.negotiate(asked, request.cookies.get(i18n.LANG_COOKIE, ""),
                          accept_language_header=request.headers.get("accept-language", ""))


def _lang(context: Context) -> str:
    lang = context.get("lang")
    return lang if lang in i18n.LANGUAGES else i18n.DEFAULT


def _fill(context: Context, text: str, variables: dict[str, Any]) -> str:
    if context.eval_ctx.autoescape:
        text = Markup(text)  # the translation is trusted; what fills it is escaped
    return text % variables if variables else text


@pass_context
def _gettext(context: Context, message: str, **variables: Any) -> str:
    return _fill(context, i18n.translations(_lang(context)).gettext(message), variables)


@pass_context
def _ngettext(context: Context, singular: str, plural: str, n: int, **variables: Any) -> str:
    lang = _lang(context)
    text = i18n.translations(lang).ngettext(singular, plural, n)
    return _fill(context, text, {"num": i18n.format_number(n, lang)} | variables)


@pass_context
def _number(context: Context, n: int) -> str:
    return i18n.format_number(n, _lang(context))


@pass_context
def _money(context: Context, m: Money) -> str:
    return i18n.format_money(m, _lang(context))


@pass_context
def _date(context: Context, d: date | datetime, form: str = "medium") -> str:
    return i18n.format_date(d, _lang(context), form)


def templates(folder: Path) -> Environment:
    """The templates in `folder`, escaped (HTML and SVG) and translated."""
    env = Environment(loader=FileSystemLoader(folder), autoescape=select_autoescape(["html", "svg"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.globals.update(_=_gettext, gettext=_gettext, ngettext=_ngettext)
    env.filters.update(number=_number, money=_money, date=_date)
    env.globals["frame_css"] = FRAME_CSS
    return env
