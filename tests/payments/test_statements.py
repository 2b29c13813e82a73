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
                                        pay_db: str) -> None:
    who = sign_up(GraphQLClient(paying_api))
    me, pk = GraphQLClient(paying_api, who["token"]), from_global(who["id"])[1]
    out = start(me, 1500)
    _, completed = fake_stripe.pay(session_of(out["checkoutUrl"]))
    deliver(paying_api, completed)
    topup = from_global(out["topUp"]["id"])[1]
    wait_for(lambda: system_scalar(pay_db, "select status from topups where id = $1", topup) == "succeeded",
             what="the top-up credited")
    spend(pay_db, pk, 200)
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


def test_a_closed_months_statements_are_mailed_once(server_url: str) -> None:
    """After the close, everyone it charged or paid gets one mail with their statement's links."""
    import asyncio
    from datetime import date

    import asyncpg

    from merci import close, config, scheduler, statements
    from tests import factories as f
    from tests.conftest import migrated_database

    period = date(2030, 4, 1)

    async def run(dsn: str) -> None:
        settings = config.Settings(database_url=dsn, public_url="https://merci.example").derived()
        conn = await asyncpg.connect(settings.system_database_url)
        try:
            tenant = await f.merci_tenant(conn)
            fan = await f.supporter(conn, tenant, budget=1000, funds=5000)
            await f.supporter(conn, tenant, budget=1000, funds=5000)  # clicked nothing: no mail
            maker = await f.person(conn, tenant, "maker")
            thing = await f.thing(conn, tenant, maker)
            await f.click(conn, tenant, fan, thing, "2030-04-03T12:00:00Z")
            assert await statements.months_to_mail(conn) == []
            assert await close.close_inline(conn, period=period, shards=1) == "done"
            assert await statements.months_to_mail(conn) == [period]

            class Sent:
                def __init__(self) -> None:
                    self.sent: list[tuple[str, tuple[object, ...]]] = []

                def send(self, actor: str, *args: object, queue_name: str = "") -> None:
                    self.sent.append((actor, args))

            q = Sent()
            await scheduler.tick(conn, settings, q, datetime(2030, 5, 2, tzinfo=UTC))  # type: ignore[arg-type]
            assert (statements.MAIL_ACTOR, ("2030-04",)) in q.sent
            first = await statements.mail_month(conn, settings, period=period)
            again = await statements.mail_month(conn, settings, period=period)
            assert len(first) == 2 and again == []
            rows = await conn.fetch("select account_id, subject, body from mail_outbox where id = any($1::bigint[])"
                                    " order by account_id", first)
            assert [r["account_id"] for r in rows] == sorted([fan, maker])  # not `idle`: nothing charged
            assert all(r["subject"] == "Your Merci statement for 2030-04" for r in rows)
            assert all("https://merci.example/account/statements/2030-04.pdf" in r["body"] for r in rows)
            assert await statements.months_to_mail(conn) == []
        finally:
            await conn.close()

    with migrated_database(server_url, "merci_statements") as dsn:
        asyncio.run(run(dsn))
