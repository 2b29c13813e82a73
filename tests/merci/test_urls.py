"""URL normalization: one page is one thing, however it is linked."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from merci.errors import UserError
from merci.urls import _normalize, normalize_url


@pytest.mark.parametrize(("raw", "normal"), [
    ("https://Example.org:443/p?utm_source=x&a=1#top", "https://example.org/p?a=1"),
    ("HTTP://EXAMPLE.ORG", "http://example.org/"),
    ("http://example.org:80/a", "http://example.org/a"),
    ("http://example.org:8080/a", "http://example.org:8080/a"),
    ("https://example.org/?fbclid=1&gclid=2&q=3", "https://example.org/?q=3"),
    ("https://café.example/", "https://xn--caf-dma.example/"),
    ("http://[::1]:80/x", "http://[::1]/x"),
    ("https://x.org./", "https://x.org/"),
    ("  https://x.org/a  ", "https://x.org/a"),
    ("https://x.org//a//b", "https://x.org//a//b"),
])
def test_normal_forms(raw: str, normal: str) -> None:
    assert normalize_url(raw) == normal


@pytest.mark.parametrize("raw", [
    "", "notaurl", "ftp://x.example/", "https://intranet/", "https://a..b/", "https://x.org/a b",
    "https://" + "a" * 64 + ".com/", "http://u@x.org/", "http://x.org:99999/", "https://x.org/" + "a" * 2048,
])
def test_refused(raw: str) -> None:
    with pytest.raises(UserError) as err:
        normalize_url(raw)
    assert err.value.code == "INVALID_URL"


urlish = st.text(alphabet="abcXY019-._~:/?#[]@!$&'()*+,;=% \u00e9", max_size=40)


def _outcome(f: object, text: str) -> tuple[str, str]:
    try:
        return "ok", f(text)  # type: ignore[operator]
    except UserError as err:
        return "refused", err.code


@settings(max_examples=2000, deadline=None)
@given(scheme=st.sampled_from(["http://", "https://", "HTTPS://", "ftp://", ""]), rest=urlish)
def test_the_shortcut_for_simple_urls_agrees_with_the_full_parse(scheme: str, rest: str) -> None:
    text = scheme + rest
    assert _outcome(normalize_url, text) == _outcome(lambda t: _normalize(t.strip(), "url"), text)


@settings(max_examples=1000, deadline=None)
@given(text=st.from_regex(r"https?://[a-z0-9-]{1,70}(\.[a-z0-9-]{1,10}){1,3}(/[a-zA-Z0-9._~%/:@-]{0,20})?",
                          fullmatch=True))
def test_simple_urls_normalize_as_the_full_parse_says(text: str) -> None:
    assert _outcome(normalize_url, text) == _outcome(lambda t: _normalize(t.strip(), "url"), text)
