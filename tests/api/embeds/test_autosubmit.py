"""Flattr's auto-submit parameters, and the rel="payment" links that name an owner."""

from __future__ import annotations

from merci.autosubmit import parse, payment_owner

MERCI = "https://merci.example"


def test_flattr_parameters_are_understood() -> None:
    sub, errors = parse({"user_id": "flattr:Alice_B", "url": "https://blog.example/p?utm_source=x#c", "title": " T ",
                         "description": "D", "language": "en_GB", "tags": "Rust, web,,rust", "category": "Software",
                         "hidden": "1"}, require_url=True)
    assert errors == []
    assert (sub.owner, sub.url, sub.title, sub.language, sub.tags, sub.category, sub.hidden) == (
        "alice_b", "https://blog.example/p", "T", "en", ["rust", "web"], "software", True)
    assert parse({"owner": "alice_b", "url": "https://x.example/"})[0].owner == "alice_b"  # the newer name
    assert parse(sub.query())[0] == sub  # a submission round-trips through its link


def test_every_problem_is_named() -> None:
    _, errors = parse({"url": "mailto:a@b.example", "user_id": "no way", "language": "klingon", "hidden": "2",
                       "category": "music", "tags": "x" * 51}, require_url=True)
    assert [(e.code, e.field) for e in errors] == [
        ("INVALID_URL", "url"), ("INVALID_OWNER", "owner"), ("INVALID_CATEGORY", "category"),
        ("INVALID_LANGUAGE", "language"), ("INVALID_TAG", "tags"), ("INVALID_HIDDEN", "hidden")]
    assert [e.code for e in parse({}, require_url=True)[1]] == ["MISSING_URL"]
    assert [e.code for e in parse({"thing": "-3"})[1]] == ["INVALID_THING"]
    assert parse({"thing": "VGhpbmc6Nw"})[0].thing_id == 7  # a global id


def test_payment_links_name_an_owner_only_on_merci() -> None:
    def page(*links: str) -> bytes:
        return ("<html><head>" + "".join(links) + "</head><body></body></html>").encode()

    assert payment_owner(page(f'<link rel="payment" href="{MERCI}/submit?owner=alice">'), public_url=MERCI) == "alice"
    assert payment_owner(page(f'<link rel="payment" href="{MERCI}/submit/auto?user_id=flattr:bob&amp;url=x">'),
                         public_url=MERCI) == "bob"
    assert payment_owner(page('<link rel="payment" href="https://evil.example/submit?owner=alice">'),
                         public_url=MERCI) is None
    assert payment_owner(page(f'<link rel="stylesheet" href="{MERCI}/submit?owner=alice">'), public_url=MERCI) is None
    assert payment_owner(page(f'<link rel="payment" href="{MERCI}/submit?owner=Not+A+Handle">'),
                         public_url=MERCI) is None
