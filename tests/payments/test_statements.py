"""Monthly statements: the data (me { statement }) and the PDF, for the session's account only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from merci.ids import from_global
from tests.conftest import GraphQLClient, sign_up, system_scalar, wait_for
from tests.payments.conftest import FakeStripe, deliver
from tests.payments.helpers import session_of, spend, start

STATEMENT = """query($p: String!) { me { statement(period: $p) { period toppedUp { amount } refunded { amount }
  frozen { amount } balanceEnd { amount } creator { earned { amount } supporters paidOut { amount } } pdfPath } } }"""


def test_a_statement_as_data_and_as_pdf(paying_api: str, paying_worker: Any, fake_stripe: FakeStripe,
                                        database_url: str) -> None:
    who = sign_up(GraphQLClient(paying_api))
    me, pk = GraphQLClient(paying_api, who["token"]), from_global(who["id"])[1]
    out = start(me, 1500)
    _, completed = fake_stripe.pay(session_of(out["checkoutUrl"]))
    deliver(paying_api, completed)
    topup = from_global(out["topUp"]["id"])[1]
    wait_for(lambda: system_scalar(database_url, "select status from topups where id = $1", topup) == "succeeded",
             what="the top-up credited")
    spend(database_url, pk, 200)
    period = f"{datetime.now(UTC):%Y-%m}"
    st = me(STATEMENT, {"p": period})["me"]["statement"]
    assert st == {"period": period, "toppedUp": {"amount": 1500}, "refunded": {"amount": 0}, "frozen": {"amount": 0},
                  "balanceEnd": {"amount": 1300},
                  "creator": {"earned": {"amount": 0}, "supporters": 0, "paidOut": {"amount": 0}},
                  "pdfPath": f"/account/statements/{period}.pdf"}

    cookies = {"merci_session": who["token"]}
    pdf = httpx.get(f"{paying_api}{st['pdfPath']}", cookies=cookies, timeout=60)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf", pdf.text[:500]
    assert pdf.content.startswith(b"%PDF-") and len(pdf.content) > 1000
    assert httpx.get(f"{paying_api}/account/statements/2026-13.pdf", cookies=cookies).status_code == 404
    anonymous = httpx.get(f"{paying_api}{st['pdfPath']}", follow_redirects=False)
    assert anonymous.status_code in (302, 303) and "/login" in anonymous.headers["location"]
