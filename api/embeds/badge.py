"""Static SVG badges with a click count, for READMEs: `/badge/thing/<id>.svg`,
`/badge/creator/<handle>.svg` and `/badge/url.svg?url=…`. Cached by CDNs and
image proxies, revalidated cheaply with an ETag."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from html import escape

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from api.embeds import web
from api.embeds.i18n import count, say
from graph import pages
from merci import things
from merci.db import scoped
from merci.errors import UserError
from merci.i18n import N_
from merci.ids import MAX_ID, from_global
from merci.urls import normalize_url

MAX_AGE = 300
CHAR = 6.6  # average glyph width of 11px Verdana, as shields-style badges assume
INVALID_ID, INVALID_URL, UNKNOWN = N_("invalid id"), N_("invalid url"), N_("unknown")


def svg(label: str, value: str, colour: str = "#e8505b") -> str:
    left = int(len(label) * CHAR + 12)
    right = int(len(value) * CHAR + 12)
    width = left + right
    label, value = escape(label), escape(value)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img"'
        f' aria-label="{label}: {value}"><title>{label}: {value}</title>'
        f'<rect width="{left}" height="20" fill="#555"/><rect x="{left}" width="{right}" height="20"'
        f' fill="{colour}"/><g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif"'
        f' font-size="11"><text x="{left / 2:.1f}" y="14">{label}</text>'
        f'<text x="{left + right / 2:.1f}" y="14">{value}</text></g></svg>'
    )


def respond(request: Request, body: str, status: int = 200) -> Response:
    etag = '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={MAX_AGE}", "X-Content-Type-Options": "nosniff",
               # An SVG opened directly is a document: it may not run anything.
               "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
               "Cross-Origin-Resource-Policy": "cross-origin"}
    inm = request.headers.get("if-none-match", "")
    if status == 200 and etag in [t.strip().removeprefix("W/") for t in inm.split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(body, status_code=status, media_type="image/svg+xml; charset=utf-8", headers=headers)


def _lang(request: Request) -> str:
    return pages.choose_lang(request, browser=False)  # not Accept-Language: a README's image is shared by all


async def _count(request: Request, clicks: Callable[[asyncpg.Connection], Awaitable[int | None]]) -> int | None:
    async with scoped(request.app.state.pool, await web.anonymous_scope(request)) as conn:
        return await clicks(conn)  # things and their counters are public


async def thing_badge(request: Request) -> Response:
    lang = _lang(request)
    raw = request.path_params["id"]
    try:
        pk = int(raw) if raw.isdigit() else from_global(raw, expect="Thing")[1]
        if not 0 < pk <= MAX_ID:
            raise UserError("INVALID_ID", "not a valid id")
    except UserError:
        return respond(request, svg("merci", say(lang, INVALID_ID), "#9f9f9f"), 400)
    n = await _count(request, lambda conn: things.all_clicks(conn, thing_id=pk))
    if n is None:
        return respond(request, svg("merci", say(lang, UNKNOWN), "#9f9f9f"), 404)
    return respond(request, svg("merci", count(lang, n)))


async def url_badge(request: Request) -> Response:
    lang = _lang(request)
    try:
        url = normalize_url(request.query_params.get("url", ""))
    except UserError:
        return respond(request, svg("merci", say(lang, INVALID_URL), "#9f9f9f"), 400)
    n = await _count(request, lambda conn: things.all_clicks_at(conn, url=url))
    return respond(request, svg("merci", count(lang, n or 0)))


async def creator_badge(request: Request) -> Response:
    lang = _lang(request)
    handle = request.path_params["handle"].lower()
    n = await _count(request, lambda conn: things.all_clicks_of_creator(conn, handle=handle))
    if n is None:
        return respond(request, svg("merci", say(lang, UNKNOWN), "#9f9f9f"), 404)
    return respond(request, svg("merci", count(lang, n)))
