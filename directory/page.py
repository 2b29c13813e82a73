"""The /directory page: server-rendered search, filters and results with their
buttons. Plain HTML forms and links, so it works without JavaScript; in every
language of the catalogs (graph.pages.choose_lang: `?lang=`, a remembered choice,
else Accept-Language)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from directory.types import category_names
from graph import pages
from merci import highlights, i18n, search, sites
from merci.db import Scope, scoped
from merci.errors import UserError
from merci.i18n import N_
from merci.tenants import default_tenant_id

PAGE_SIZE = 20
_env = pages.templates(Path(__file__).parent / "templates")
SORT_NAMES = {"RELEVANCE": N_("Relevance"), "POPULAR": N_("Popular"), "NEWEST": N_("Newest"),
              "TRENDING": N_("Trending")}


def marked(text: str | None, ranges: list[tuple[int, int]]) -> Markup:
    """`text` escaped, its `ranges` in <mark>."""
    text = text or ""
    out: list[str] = []
    at = 0
    for start, length in ranges:
        out += [escape(text[at:start]), Markup("<mark>"), escape(text[start:start + length]), Markup("</mark>")]
        at = start + length
    out.append(escape(text[at:]))
    return Markup("").join(out)


async def directory_page(request: Request) -> HTMLResponse:
    lang = pages.choose_lang(request)
    params = request.query_params
    form = {k: params.get(k, "") for k in ("q", "category", "language", "sort", "after", "exact")}
    exact = form["exact"] in ("1", "true", "on")
    sort = form["sort"] if form["sort"] in search.SORTS else "RELEVANCE"
    settings = request.app.state.settings
    error = None
    page: search.SearchPage | None = None
    facets: search.Facets | None = None
    marks: list[highlights.Highlight] = []
    try:
        q = search.clean_query(text=form["q"] or None, category=form["category"] or None,
                               language=form["language"] or None, sort=sort, exact=exact)
        pool = request.app.state.pool
        async with pool.acquire() as probe:
            tenant_id = await default_tenant_id(probe)
        async with scoped(pool, Scope(tenant_id)) as conn:  # an anonymous visitor of the public site
            page = await search.search(conn, q, first=PAGE_SIZE, after=form["after"] or None)
            facets = await search.facets(conn, q, page.match)
            marks = await highlights.of_rows(conn, page.rows, page.match)
    except UserError as err:
        error = err.message
    names = category_names(lang)
    results: list[dict[str, Any]] = []
    if page is not None:
        for row, mark in zip(page.rows, marks, strict=True):
            results.append({**row, "category_name": names.get(row["category"], row["category"]),
                            "button_href": sites.button_href(settings.public_url, row["url"]),
                            "title_html": marked(row["title"], mark.title),
                            "description_html": marked(row["description"], mark.description)})
    next_href = None
    if page is not None and page.has_next_page:
        keep = {k: v for k, v in form.items() if v and k != "after"} | {"lang": lang, "after": page.cursors[-1]}
        next_href = "/directory?" + urlencode(keep)
    # "Search instead for": the words as typed, nothing corrected (kept while paging).
    instead_href = None
    if page is not None and page.corrected_query:
        instead_href = "/directory?" + urlencode(
            {k: v for k, v in form.items() if v and k != "after"} | {"lang": lang, "exact": "1"})
    switches = [(other, i18n.language_name(other),
                 "/directory?" + urlencode({k: v for k, v in form.items() if v} | {"lang": other}))
                for other in i18n.LANGUAGES if other != lang]
    t = i18n.translations(lang)
    html = _env.get_template("directory.html").render(
        lang=lang, form=form, sort=sort, sorts=[(s, t.gettext(SORT_NAMES[s])) for s in search.SORTS],
        categories=[(c, names[c]) for c in sites.CATEGORIES], results=results, facets=facets, page=page,
        error=error, next_href=next_href, switches=switches, category_names=names, instead_href=instead_href,
    )
    return HTMLResponse(html, headers={"Content-Language": lang, "Vary": "Accept-Language, Cookie"},
                        status_code=400 if error else 200)


def routes() -> list[Route]:
    return [Route("/directory", directory_page, methods=["GET"])]
