"""A click from the button or /submit written in the instant its month's close began is
answered MONTH_CLOSED, as `flattr` is (issue 17; merci.clicks.Handoff raises it from the
write, migration 0030), not UNAVAILABLE as if the broker were down."""

from __future__ import annotations

from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.requests import Request

from api.embeds import clicking
from merci import autosubmit, buttons, clicks
from merci.accounts import Principal


class Batcher:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def submit(self, accepted: Any) -> None:
        raise self.error


@pytest.mark.parametrize(("raised", "code"), [(clicks.month_closed(), "MONTH_CLOSED"),
                                              (ConnectionError("broker down"), "UNAVAILABLE")])
async def test_the_write_s_refusal_is_answered_as_it_is(monkeypatch: pytest.MonkeyPatch, raised: BaseException,
                                                        code: str) -> None:
    @asynccontextmanager
    async def scope(*_: Any) -> Any:
        yield None

    async def checked(*_: Any, **__: Any) -> tuple[object, None]:
        return object(), None  # the checks passed: the write is what refuses

    monkeypatch.setattr(clicking, "scoped", scope)
    monkeypatch.setattr(buttons, "click", checked)
    state = SimpleNamespace(limiter=None, pool=None, clicks=Batcher(raised), queue=None,
                            settings=SimpleNamespace(currency="EUR", secret_key="k"))
    request = Request({"type": "http", "method": "POST", "path": "/embed/button", "headers": [],
                       "client": ("127.0.0.1", 1), "app": SimpleNamespace(state=state)})
    principal = Principal(tenant_id=1, account_id=7, email_verified=True)
    sub, problems = autosubmit.parse({"url": "https://example.org/a", "title": "A"})
    assert not problems
    err = await clicking.click(request, principal, sub)
    assert err is not None and err.code == code
