"""The /directory page: server-rendered HTML that works without JavaScript, in English
and in French."""

from __future__ import annotations

import re
import secrets
import string
from html import unescape
from typing import Any
from urllib.parse import quote, urlencode

import asyncpg
import httpx
import pytest

from tests.directory.helpers import listed_site, new_tenant, person


@pytest.fixture(scope="module")
async def world(system_pool: asyncpg.Pool) -> dict[str, Any]:
    async with system_pool.acquire() as conn:
        merci = await conn.fetchval("select id from tenants where slug = 'merci'")
        owner = await person(conn, merci, "creator")
        ids = [await listed_site(conn, merci, owner, title=f"Ukulele lessons {i:02d}", tags=["ukulele"],
                                 category="audio" if i % 2 else "video", language="fr" if i % 3 else "en")
               for i in range(23)]
        other, _ = await new_tenant(conn)
        await listed_site(conn, other, await person(conn, other, "c"), title="Ukulele <script>alert(1)</script>")
    return {"ids": ids}


def get(api_url: str, path: str, **headers: str) -> httpx.Response:
    return httpx.get(api_url + path, headers=headers, timeout=10)


def test_search_page_in_english(api_url: str, world: dict[str, Any]) -> None:
    r = get(api_url, "/directory?q=ukulele", **{"Accept-Language": "de-DE, en;q=0.8"})
    assert r.status_code == 200 and r.headers["content-language"] == "en"
    page = r.text
    assert '<html lang="en">' in page and "Directory of sites that accept Merci" in page
    assert "<script>" not in page  # no JavaScript needed; and titles are escaped
    assert "<mark>Ukulele</mark> &lt;script&gt;alert(1)&lt;/script&gt;" in page  # the match marked, the rest escaped
    assert page.count('class="merci-button"') == 20
    buttons = re.findall(r'<a class="merci-button" href="([^"]+)">', page)
    assert all(b.startswith("http://127.0.0.1:8000/submit?url=https%3A%2F%2F") for b in map(unescape, buttons))
    assert "24 sites" in page
    # The next page is a plain link that carries the cursor.
    next_href = unescape(re.search(r'<a rel="next" href="([^"]+)"', page).group(1))  # type: ignore[union-attr]
    second = get(api_url, next_href).text
    assert second.count('class="merci-button"') == 4 and 'rel="next"' not in second


def test_search_page_in_french_with_filters(api_url: str, world: dict[str, Any]) -> None:
    r = get(api_url, "/directory?q=ukulele&category=audio&sort=NEWEST", **{"Accept-Language": "fr-CA,fr;q=0.9"})
    assert r.headers["content-language"] == "fr" and '<html lang="fr">' in r.text
    assert "Annuaire des sites qui acceptent Merci" in r.text and "Nouveaux" in r.text
    titles = re.findall(r"<mark>Ukulele</mark> lessons (\d\d)", r.text)
    assert titles and all(int(t) % 2 == 1 for t in titles)
    assert titles == sorted(titles, reverse=True)  # newest first
    # ?lang= wins over the header, and the facets are links.
    en = get(api_url, "/directory?q=ukulele&lang=en", **{"Accept-Language": "fr"})
    assert en.headers["content-language"] == "en" and "Audio</a> (" in en.text
    assert 'href="/directory?q=ukulele&amp;lang=fr"' in en.text or "lang=fr" in en.text


def test_typos_and_bad_input_on_the_page(api_url: str, world: dict[str, Any]) -> None:
    typo = get(api_url, "/directory?q=ukulel%C3%A9e&lang=en").text
    assert "Ukulele lessons" in typo or "ukulel" in typo
    bad = get(api_url, "/directory?category=cooking&lang=fr")
    assert bad.status_code == 400 and "cooking" in unescape(bad.text)
    empty = get(api_url, f"/directory?q={quote('zzzzqqqq nothing')}&lang=fr").text
    assert "Aucun site ne correspond" in empty


async def test_counts_say_site_or_sites_in_each_language(api_url: str, system_pool: asyncpg.Pool) -> None:
    one, two = ("".join(secrets.choice(string.ascii_lowercase) for _ in range(12)) for _ in range(2))
    async with system_pool.acquire() as conn:
        merci = await conn.fetchval("select id from tenants where slug = 'merci'")
        owner = await person(conn, merci, "counted")
        await listed_site(conn, merci, owner, title=f"Counted {one}")
        for i in range(2):
            await listed_site(conn, merci, owner, title=f"Counted {two} {i}")

    def count(q: str, lang: str) -> str:
        page = get(api_url, "/directory?" + urlencode({"q": q, "lang": lang})).text
        return unescape(re.search(r'<p class="count">([^<]*)</p>', page).group(1))  # type: ignore[union-attr]

    assert [count(q, "en") for q in (one, two)] == ["1 site", "2 sites"]  # the page said "1 sites"
    assert [count(q, "fr") for q in (one, two)] == ["1 site", "2 sites"]
    nothing = "".join(secrets.choice(string.ascii_lowercase) for _ in range(12)) + " zzzzqqqq"
    assert count(nothing, "fr") == "0 site" and count(nothing, "en") == "0 sites"  # 0 is singular in French
