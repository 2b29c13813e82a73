"""Language negotiation for server-rendered pages (directory, buttons)."""

from __future__ import annotations

from collections.abc import Sequence


def negotiate(asked: str, accept_language: str, supported: Sequence[str], default: str = "en") -> str:
    """An explicit `?lang=` first, then the Accept-Language header by q-value."""
    asked = asked.lower()[:2]
    if asked in supported:
        return asked
    ranked: list[tuple[float, str]] = []
    for part in accept_language.split(","):
        tag, _, params = part.strip().partition(";")
        try:
            q = float(params.strip()[2:]) if params.strip().startswith("q=") else 1.0
        except ValueError:
            q = 0.0
        ranked.append((q, tag.strip().lower()[:2]))
    for _, tag in sorted(ranked, key=lambda x: -x[0]):
        if tag in supported:
            return tag
    return default
