"""Charts drawn on the server as SVG that needs no script: horizontal bars, one per row,
each labelled with its value. The SVG has a <title> and <desc> (role="img", named by
them) and the template puts a table of the same numbers next to it, so a screen reader
or a text browser gets everything the picture shows (templates/_chart.html)."""

from __future__ import annotations

from dataclasses import dataclass

WIDTH = 320  # the viewBox's width: the SVG scales to its container (it never overflows 375 px)
BAR = 22
GAP = 10
LABEL = 14  # the label's line above its bar


@dataclass(frozen=True)
class Bar:
    label: str
    value: int  # what the length is proportional to (minor units, clicks)
    text: str  # the value as shown (formatted money, a number)
    kind: str = "share"  # a CSS class: share, fee, escrow
    y: int = 0
    width: float = 0.0


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    desc: str
    bars: list[Bar]
    height: int
    width: int = WIDTH


def bars(id: str, title: str, desc: str, rows: list[Bar]) -> Chart:
    """Rows as bars, the longest filling the width (all zero: no bar, only labels)."""
    top = max((r.value for r in rows), default=0)
    out, y = [], 0
    for r in rows:
        width = 0.0 if top <= 0 else max(2.0, WIDTH * max(r.value, 0) / top) if r.value > 0 else 0.0
        out.append(Bar(r.label, r.value, r.text, r.kind, y + LABEL, round(width, 1)))
        y += LABEL + BAR + GAP
    return Chart(id=id, title=title, desc=desc, bars=out, height=max(y, 1))
