"""Highlights: where a search's words are in each result's title and description, as
character ranges (Python string indices: Unicode code points) a page marks with <mark>.

PostgreSQL finds them with ts_headline in the listing's own configuration, so a word is
marked when it matched (its stem, a typo'd word's, a completion of the prefix), not when
it merely looks like one. Markers are two control characters no title holds; a text
that does hold one gets no highlights rather than wrong ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

START, STOP = "\x02", "\x03"
FIELDS = ("title", "description")
# HighlightAll: the whole text, every match marked (ts_headline's fragments would cut it).
_OPTIONS = f"HighlightAll=true, StartSel={START}, StopSel={STOP}"


@dataclass(frozen=True)
class Highlight:
    site_id: int
    title: list[tuple[int, int]]  # (start, length)
    description: list[tuple[int, int]]


def ranges(text: str, marked: str) -> list[tuple[int, int]]:
    """The (start, length) ranges `marked` (text with START/STOP around matches) marks in
    `text`; none when the two do not agree."""
    if START in text or STOP in text:
        return []
    out: list[tuple[int, int]] = []
    plain: list[str] = []
    start: int | None = None
    n = 0
    for ch in marked:
        if ch == START:
            start = n
        elif ch == STOP:
            if start is not None and n > start:
                out.append((start, n - start))
            start = None
        else:
            plain.append(ch)
            n += 1
    return out if "".join(plain) == text else []


async def of_rows(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]], match: str | None) -> list[Highlight]:
    """Highlights of each row (site rows with id, language, title and description), in order."""
    if match is None or not rows:
        return [Highlight(r["id"], [], []) for r in rows]
    languages = [r["language"] for r in rows for _ in FIELDS]
    texts = [r[f] or "" for r in rows for f in FIELDS]
    marked = await conn.fetch(
        "select case when u.t = '' then '' else ts_headline(merci_ts_config(u.l), u.t, $1::tsquery, $4) end as h"
        "  from unnest($2::text[], $3::text[]) with ordinality u(l, t, n) order by u.n",
        match, languages, texts, _OPTIONS)
    out = []
    for i, r in enumerate(rows):
        title, description = (ranges(texts[2 * i + k], marked[2 * i + k]["h"]) for k in range(2))
        out.append(Highlight(r["id"], title, description))
    return out
