"""oEmbed (https://oembed.com) for buttons: given a Merci button link (/submit…,
/embed/button…) or a thing's own URL, the HTML of the button's iframe."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.embeds import web
from api.embeds.button import HEIGHT, WIDTH, frame_src
from merci import autosubmit, buttons, i18n
from merci.db import scoped
from merci.errors import UserError

BUTTON_PATHS = ("/submit", "/submit/auto", "/embed/button")


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers={"Access-Control-Allow-Origin": "*"})


def _dimension(raw: str | None, name: str) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or not 0 < int(raw) <= 100_000:
        raise UserError("INVALID_DIMENSION", f"{name} is a positive number of pixels", name)
    return int(raw)


async def oembed(request: Request) -> Response:
    params = web.params(request)
    if params.get("format", "json") != "json":
        return _error(501, "only format=json is supported")  # the spec's answer for other formats
    raw = params.get("url", "").strip()
    if not raw:
        return _error(400, "url is required")
    try:
        max_w = _dimension(params.get("maxwidth"), "maxwidth")
        max_h = _dimension(params.get("maxheight"), "maxheight")
    except UserError as err:
        return _error(400, err.message)
    parts = urlsplit(raw)
    ours = f"{parts.scheme}://{parts.netloc}" in web.own_origins(request)
    if ours and parts.path.rstrip("/") in BUTTON_PATHS:
        sub, problems = autosubmit.parse(dict(parse_qsl(parts.query)))
        must_exist = False
    else:
        sub, problems = autosubmit.parse({"url": raw})
        must_exist = True  # a page's own URL: only a thing Merci knows has a button
    if problems:
        return _error(400, "; ".join(p.message for p in problems))
    try:
        async with scoped(request.app.state.pool, await web.anonymous_scope(request)) as conn:
            button = await buttons.load(conn, sub=sub, account_id=None, now=datetime.now(UTC), currency="EUR")
    except UserError as err:
        return _error(404, err.message)
    if must_exist and button.thing is None:
        return _error(404, "no Merci button for this URL")
    if (max_w is not None and max_w < WIDTH) or (max_h is not None and max_h < HEIGHT):
        return _error(404, f"the button needs {WIDTH}x{HEIGHT} pixels")
    if button.thing is not None and sub.url is None:
        sub.url = button.url
    settings = web.settings_of(request)
    lang = i18n.negotiate(params.get("lang", ""))  # no Accept-Language: the answer is cached for everyone
    src = frame_src(settings.public_url, sub, lang)
    html = (f'<iframe src="{escape(src)}" width="{WIDTH}" height="{HEIGHT}" title="Merci"'
            ' style="border:0;overflow:hidden" loading="lazy"></iframe>')
    body = {
        "version": "1.0", "type": "rich", "provider_name": "Merci", "provider_url": settings.public_url,
        "title": button.title, "html": html, "width": WIDTH, "height": HEIGHT, "cache_age": 3600,
    }
    if button.owner_handle:
        body["author_name"] = button.owner_handle
    return JSONResponse(body, headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=3600"})
