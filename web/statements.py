"""A month's statement as a PDF (/account/statements/YYYY-MM.pdf): the same data as the
statement page (the public operation StatementPdf), laid out for paper and rendered by
WeasyPrint, off the event loop (a page takes tens of milliseconds of CPU)."""

from __future__ import annotations

import asyncio
import re

from starlette.requests import Request
from starlette.responses import Response

from merci.i18n import N_
from web import gql
from web.pages import account_required, env, error_page, lang_of
from web.words import say

PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
STATUS = {"OPEN": N_("open: a projection, until the month closes"), "CLOSING": N_("closing"),
          "CLOSED": N_("closed")}


def _pdf(html: str) -> bytes:
    from weasyprint import HTML  # imported when first used: pango is loaded once, by the pages that need it

    return HTML(string=html).write_pdf()  # type: ignore[no-any-return]


@account_required
async def statement_pdf(request: Request) -> Response:
    period = request.path_params["period"]
    lang = lang_of(request)
    if not PERIOD.match(period):
        return error_page(request, 404, say(lang, N_("This page does not exist.")))
    me = (await gql.run(request, "StatementPdf", {"period": period})).data.get("me") or {}
    if not me.get("month") or not me.get("statement"):
        return error_page(request, 404, say(lang, N_("This page does not exist.")))
    html = env.get_template("statement_pdf.html").render(  # `_` and `money` read `lang`
        lang=lang, period=period, me=me, month=me["month"], st=me["statement"],
        status_text=say(lang, STATUS.get(me["month"]["status"], "")))
    pdf = await asyncio.to_thread(_pdf, html)
    return Response(pdf, media_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="merci-statement-{period}.pdf"', "Cache-Control": "no-store"})

