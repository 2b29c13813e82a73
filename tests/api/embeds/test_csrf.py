"""One CSRF helper for Merci's pages (api.embeds.web): the button, /submit, OAuth consent
and the login form (bound to its own cookie before there is a session)."""

from __future__ import annotations

from api.embeds.web import csrf_ok, csrf_token
from merci.config import Settings

SETTINGS = Settings(secret_key="k1")


def test_a_token_holds_for_its_binding_and_purpose_only() -> None:
    token = csrf_token(SETTINGS, "session-a", "login")
    assert csrf_ok(SETTINGS, "session-a", "login", token)
    assert not csrf_ok(SETTINGS, "session-b", "login", token)  # another browser's
    assert not csrf_ok(SETTINGS, "session-a", "button", token)  # another form's
    assert not csrf_ok(Settings(secret_key="k2"), "session-a", "login", token)  # another deployment's
    assert not csrf_ok(SETTINGS, "session-a", "login", "")


def test_nothing_to_bind_to_is_refused() -> None:
    """A login POST without its cookie: no token can hold, not even one made for ''."""
    assert not csrf_ok(SETTINGS, "", "login", csrf_token(SETTINGS, "", "login"))
