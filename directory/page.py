"""The /directory page: server-rendered search, filters and results with their
buttons. Plain HTML forms and links, so it works without JavaScript; English and
French (`?lang=`, else Accept-Language)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from directory.types import CATEGORY_NAMES
from merci import search, sites
from merci.db import Scope, scoped
from merci.errors import UserError
from merci.i18n import negotiate
from merci.tenants import DEFAULT_TENANT

LANGS = ("en", "fr")
PAGE_SIZE = 20
_env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                   autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)

TEXT = {
    "en": {"title": "Directory of sites that accept Merci", "search": "Search", "placeholder": "podcast, café, rust…",
           "any_category": "All categories", "any_language": "All languages", "sort": "Sort",
           "RELEVANCE": "Relevance", "POPULAR": "Popular", "NEWEST": "Newest", "TRENDING": "Trending",
           "results": "{n} sites", "results_about": "about {n} sites", "none": "No site matches your search.",
           "button": "Merci",
           "corrected": "No site matched your words; showing results for “{q}”.", "next": "More results",
           "categories": "Categories", "languages": "Languages", "apply": "Apply", "lang_switch": "Français"},
    "fr": {"title": "Annuaire des sites qui acceptent Merci", "search": "Rechercher",
           "placeholder": "balado, café, rust…", "any_category": "Toutes les catégories",
           "any_language": "Toutes les langues", "sort": "Trier", "RELEVANCE": "Pertinence", "POPULAR": "Populaires",
           "NEWEST": "Nouveaux", "TRENDING": "Tendance", "results": "{n} sites", "results_about": "environ {n} sites",
           "none": "Aucun site ne correspond à votre recherche.", "button": "Merci",
           "corrected": "Aucun site ne contenait vos mots ; résultats pour « {q} ».", "next": "Plus de résultats",
           "categories": "Catégories", "languages": "Langues", "apply": "Appliquer", "lang_switch": "English"},
}


def choose_lang(request: Request) -> str:
    return negotiate(request.query_params.get("lang", ""), request.headers.get("accept-language", ""), LANGS)


async def directory_page(request: Request) -> HTMLResponse:
    lang = choose_lang(request)
    t = TEXT[lang]
    params = request.query_params
    form = {k: params.get(k, "") for k in ("q", "category", "language", "sort", "after")}
    sort = form["sort"] if form["sort"] in search.SORTS else "RELEVANCE"
    settings = request.app.state.settings
    error = None
    page: search.SearchPage | None = None
    facets: search.Facets | None = None
    try:
        q = search.clean_query(text=form["q"] or None, category=form["category"] or None,
                               language=form["language"] or None, sort=sort)
        pool = request.app.state.pool
        async with pool.acquire() as probe:
            tenant_id = await probe.fetchval("select id from tenants where slug = $1", DEFAULT_TENANT)
        async with scoped(pool, Scope(tenant_id)) as conn:  # an anonymous visitor of the public site
            page = await search.search(conn, q, first=PAGE_SIZE, after=form["after"] or None)
            facets = await search.facets(conn, q, page.match)
    except UserError as err:
        error = err.message
    names = CATEGORY_NAMES[lang]
    results: list[dict[str, Any]] = []
    if page is not None:
        for row in page.rows:
            results.append({**row, "category_name": names.get(row["category"], row["category"]),
                            "button_href": sites.button_href(settings.public_url, row["url"])})
    next_href = None
    if page is not None and page.has_next_page:
        keep = {k: v for k, v in form.items() if v and k != "after"} | {"lang": lang, "after": page.cursors[-1]}
        next_href = "/directory?" + urlencode(keep)
    other = "fr" if lang == "en" else "en"
    switch_href = "/directory?" + urlencode({k: v for k, v in form.items() if v} | {"lang": other})
    html = _env.get_template("directory.html").render(
        lang=lang, t=t, form=form, sort=sort, sorts=search.SORTS, categories=[(c, names[c]) for c in sites.CATEGORIES],
        results=results, facets=facets, page=page, error=error, next_href=next_href, switch_href=switch_href,
        category_names=names,
    )
    return HTMLResponse(html, headers={"Content-Language": lang, "Vary": "Accept-Language"},
                        status_code=400 if error else 200)


def routes() -> list[Route]:
    return [Route("/directory", directory_page, methods=["GET"])]
