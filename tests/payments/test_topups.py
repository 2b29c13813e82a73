"""Card top-ups through the fake Stripe: a Checkout Session keyed on our row, credited
only by the signed webhook, once, whatever the order and the number of deliveries; the
fee recorded as the platform's cost; a failed payment credits nothing; bad input and bad
webhooks change nothing."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from merci.ids import from_global
from tests.conftest import GraphQLClient, ledger_snapshot, sign_up, system_fetch, system_scalar, unique, wait_for
from tests.payments.conftest import FakeStripe, deliver
from tests.payments.fake_stripe import FEE_BPS, FEE_FIXED, sign
from tests.payments.helpers import ME, audited, journals, kinds, session_of, start


def supporter(api: str) -> tuple[GraphQLClient, int]:
    who = sign_up(GraphQLClient(api))
    return GraphQLClient(api, who["token"]), from_global(who["id"])[1]


def topup_status(pay_db: str, topup_id: int) -> str:
    return str(system_scalar(pay_db, "select status from topups where id = $1", topup_id))


def processed(pay_db: str, event_ids: list[str]) -> bool:
    n = system_scalar(pay_db, "select count(*) from stripe_events where id = any($1::text[])"
                      " and processed_at is not null", event_ids)
    return bool(n == len(set(event_ids)))


def test_a_topup_credits_once_however_its_events_come(paying_api: str, paying_worker: Any, fake_stripe: FakeStripe,
                                                      pay_db: str) -> None:
    me, pk = supporter(paying_api)
    out = start(me, 1000, "first")
    assert out["userErrors"] == [], out
    url = out["checkoutUrl"]
    assert url.startswith(fake_stripe.base + "/pay/cs_test_") and out["topUp"]["status"] == "OPEN"
    again = start(me, 1000, "first")  # a retry: the same top-up, the same session
    assert again["topUp"]["id"] == out["topUp"]["id"] and again["checkoutUrl"] == url
    topup = from_global(out["topUp"]["id"])[1]
    sessions = [c for c in fake_stripe.state()["calls"] if c["path"] == "/v1/checkout/sessions"
                and c["key"] == f"merci-topup-{topup}"]
    assert len(sessions) == 1 and len(fake_stripe.objects("checkout.session")) >= 1
    assert me(ME)["me"]["balance"]["amount"] == 0  # nothing before Stripe says it is paid

    succeeded, completed = fake_stripe.pay(session_of(url))
    # Out of order (the session's completion first), and each three times.
    answers = [deliver(paying_api, e) for e in (completed, completed, succeeded, completed, succeeded, succeeded)]
    assert [a.status_code for a in answers] == [200] * 6
    assert [a.json()["replay"] for a in answers] == [False, True, False, True, True, True]
    wait_for(lambda: processed(pay_db, [completed["id"], succeeded["id"]]), what="both events applied")
    wait_for(lambda: topup_status(pay_db, topup) == "succeeded", what="the top-up credited")
    assert me(ME)["me"]["balance"]["amount"] == 1000
    assert journals(pay_db, f"topup:stripe:{topup}") == [f"topup:stripe:{topup}"]
    fee = 1000 * FEE_BPS // 10_000 + FEE_FIXED
    node = me(ME)["me"]["topUps"]["edges"][0]["node"]
    assert node["status"] == "SUCCEEDED" and node["fee"] == {"amount": fee}
    assert kinds(pay_db, pk) == {"supporter": 1000}  # the supporter keeps all they paid
    fees = system_fetch(pay_db, "select la.kind, e.amount from journals j join entries e on e.journal_id = j.id"
                        " join ledger_accounts la on la.id = e.ledger_account_id where j.idem_key = $1 order by 1",
                        f"fee:topup:{topup}")
    assert [(r["kind"], r["amount"]) for r in fees] == [("platform_cost", -fee), ("provider_fee", fee)]
    outcomes = {r["id"]: r["outcome"] for r in system_fetch(
        pay_db, "select id, outcome from stripe_events where id = any($1::text[])",
        [completed["id"], succeeded["id"]])}
    assert sorted(o.split(",")[0] for o in outcomes.values()) == ["already credited", "credited"]
    # A failure Stripe reports after the success (an earlier card's decline, delivered late)
    # changes nothing: a paid top-up stays paid.
    late = fake_stripe.event("payment_intent.payment_failed", succeeded["data"]["object"]["id"],
                             last_payment_error={"message": "Your card was declined."})
    assert deliver(paying_api, late).status_code == 200
    wait_for(lambda: processed(pay_db, [late["id"]]), what="the late failure applied")
    assert topup_status(pay_db, topup) == "succeeded" and kinds(pay_db, pk) == {"supporter": 1000}
    audited(pay_db)


def test_a_failed_payment_credits_nothing(paying_api: str, paying_worker: Any, fake_stripe: FakeStripe,
                                          pay_db: str) -> None:
    me, pk = supporter(paying_api)
    out = start(me, 700)
    topup = from_global(out["topUp"]["id"])[1]
    (failed,) = fake_stripe.pay(session_of(out["checkoutUrl"]), succeed=False)
    for _ in range(3):
        assert deliver(paying_api, failed).status_code == 200
    wait_for(lambda: processed(pay_db, [failed["id"]]), what="the failure applied")
    assert topup_status(pay_db, topup) == "failed"
    assert me(ME)["me"]["balance"]["amount"] == 0 and kinds(pay_db, pk) == {}
    assert journals(pay_db, f"%:topup:{topup}") == [] and journals(pay_db, f"topup:stripe:{topup}") == []
    audited(pay_db)


def test_the_checkout_page_pays_and_its_webhooks_credit(paying_api: str, paying_worker: Any,
                                                        fake_stripe: FakeStripe, pay_db: str) -> None:
    """The whole way, as a browser would: Stripe's page, its redirect, its own deliveries."""
    me, _ = supporter(paying_api)
    out = start(me, 2500)
    paid = httpx.post(out["checkoutUrl"], data={"outcome": "pay"}, follow_redirects=False)
    assert paid.status_code == 303 and "/topup?paid=" in paid.headers["location"]  # back to Merci (MERCI_PUBLIC_URL)
    wait_for(lambda: me(ME)["me"]["balance"]["amount"] == 2500, what="the balance credited by the webhook")
    audited(pay_db)


def test_refused_topups_change_nothing(paying_api: str, pay_db: str) -> None:
    me, pk = supporter(paying_api)
    cases: list[tuple[Any, str]] = [(199, "AMOUNT_TOO_SMALL"), (0, "AMOUNT_TOO_SMALL"), (-500, "AMOUNT_TOO_SMALL"),
                                    (100_001, "AMOUNT_TOO_LARGE"), (2**31 - 1, "AMOUNT_TOO_LARGE")]
    for amount, code in cases:
        out = start(me, amount)
        assert out["topUp"] is None and [e["code"] for e in out["userErrors"]] == [code], (amount, out)
    # Not a 32-bit integer: GraphQL's Int refuses it, with no 500.
    for bad in (10.5, "1000", None, 2**40):
        r = me.raw("mutation($a: Int!) { startTopUp(input: {amount: $a, idempotencyKey: \"x\"}) { checkoutUrl } }",
                   {"a": bad})
        assert r.status_code in (200, 400) and "errors" in r.json(), r.text
    assert [e["code"] for e in start(me, 500, " ")["userErrors"]] == ["INVALID_IDEMPOTENCY_KEY"]
    # A new account: at most 100.00 a month, started or paid.
    assert start(me, 6000, "a")["userErrors"] == []
    over = start(me, 5000, "b")
    assert [e["code"] for e in over["userErrors"]] == ["MONTHLY_LIMIT"] and "40.00" in over["userErrors"][0]["message"]
    assert [e["code"] for e in start(me, 4000, "a")["userErrors"]] == ["IDEMPOTENCY_KEY_REUSED"]
    anonymous = start(GraphQLClient(paying_api), 500)
    assert [e["code"] for e in anonymous["userErrors"]] == ["UNAUTHENTICATED"]
    assert system_scalar(pay_db, "select count(*) from topups where account_id = $1", pk) == 1
    assert kinds(pay_db, pk) == {}


def test_bad_webhooks_are_refused_and_change_nothing(paying_api: str, paying_worker: Any, fake_stripe: FakeStripe,
                                                     pay_db: str) -> None:
    me, pk = supporter(paying_api)
    out = start(me, 1200)
    topup = from_global(out["topUp"]["id"])[1]
    succeeded, completed = fake_stripe.pay(session_of(out["checkoutUrl"]))
    before_events = system_scalar(pay_db, "select count(*) from stripe_events")
    before = ledger_snapshot(pay_db)
    body = json.dumps(completed)
    refused = {
        "wrong secret": deliver(paying_api, completed, secret="whsec_someone_else"),
        "no signature": deliver(paying_api, completed, signature=""),
        "garbage signature": deliver(paying_api, completed, signature="t=abc,v1=zz"),
        "stale timestamp": deliver(paying_api, completed, timestamp=int(time.time()) - 3600),
        "signed, then changed": deliver(paying_api, body.replace('"amount_total": 1200', '"amount_total": 99999'),
                                        signature=sign(body, "whsec_test_merci_payments")),
        "not JSON": deliver(paying_api, "{not json", ),
        "JSON, not an event": deliver(paying_api, json.dumps({"hello": "world"})),
        "an event without an id": deliver(paying_api, {**completed, "id": "nope"}),
    }
    assert {k: r.status_code for k, r in refused.items()} == {k: 400 for k in refused}, \
        {k: r.text for k, r in refused.items()}
    assert system_scalar(pay_db, "select count(*) from stripe_events") == before_events
    assert ledger_snapshot(pay_db) == before and topup_status(pay_db, topup) == "open"

    # A type Merci does not handle: acknowledged, stored, logged, ignored.
    unknown = fake_stripe.event("customer.created", succeeded["data"]["object"]["id"])
    assert deliver(paying_api, unknown).status_code == 200
    wait_for(lambda: processed(pay_db, [unknown["id"]]), what="the unknown event logged")
    assert system_scalar(pay_db, "select outcome from stripe_events where id = $1",
                         unknown["id"]).startswith("ignored")
    # The real ones still credit, once; a replay of an applied event changes nothing.
    assert deliver(paying_api, completed).json() == {"received": True, "replay": False}
    wait_for(lambda: topup_status(pay_db, topup) == "succeeded", what="the top-up credited")
    after = ledger_snapshot(pay_db)
    assert deliver(paying_api, completed).json() == {"received": True, "replay": True}
    time.sleep(0.5)
    assert ledger_snapshot(pay_db) == after
    assert kinds(pay_db, pk) == {"supporter": 1200}
    audited(pay_db)


def test_a_forged_event_row_moves_no_money(paying_api: str, fake_stripe: FakeStripe, pay_db: str) -> None:
    """Were the API's role abused to write an event, the worker's own check refuses it."""
    import asyncio

    import asyncpg

    from merci import config, stripe_events
    from tests.payments.conftest import KEY, SECRET

    me, pk = supporter(paying_api)
    out = start(me, 900)
    topup = from_global(out["topUp"]["id"])[1]
    _, completed = fake_stripe.pay(session_of(out["checkoutUrl"]))
    settings = config.Settings(database_url=pay_db, stripe_api_key=KEY, stripe_webhook_secret=SECRET,
                               stripe_api_base=fake_stripe.base).derived()

    async def forge() -> str:
        app = await asyncpg.connect(settings.app_database_url)
        system = await asyncpg.connect(settings.system_database_url)
        try:
            forged = {**completed, "id": "evt_forged_" + unique("")}
            await app.execute("insert into stripe_events (id, type, livemode, created, payload, signature)"
                              " values ($1, $2, false, now(), $3, 't=1,v1=00')", forged["id"], forged["type"],
                              json.dumps(forged))
            return await stripe_events.process(system, settings, event_id=forged["id"], api=None)
        finally:
            await app.close()
            await system.close()

    assert asyncio.run(forge()).startswith("refused: signature")
    assert topup_status(pay_db, topup) == "open" and kinds(pay_db, pk) == {}
    audited(pay_db)
