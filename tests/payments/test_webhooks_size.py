"""/webhooks/stripe refuses a body over its limit (413) without reading it whole, and
stores nothing."""

from __future__ import annotations

import httpx

from api.payments.webhook import MAX_BODY, PATH
from tests.conftest import system_scalar


def test_an_oversized_body_is_refused_and_nothing_is_stored(paying_api: str, pay_db: str) -> None:
    before = system_scalar(pay_db, "select count(*) from stripe_events")
    big = b'{"id": "evt_' + b"x" * (MAX_BODY + 10) + b'"}'
    r = httpx.post(paying_api + PATH, content=big, headers={"stripe-signature": "t=1,v1=00"}, timeout=30)
    assert r.status_code == 413
    small = httpx.post(paying_api + PATH, content=b"{}", headers={"stripe-signature": "t=1,v1=00"}, timeout=30)
    assert small.status_code == 400  # within the limit: read, then refused for its signature
    assert system_scalar(pay_db, "select count(*) from stripe_events") == before
