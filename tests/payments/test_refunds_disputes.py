"""Refunds and disputes through the fake Stripe: a refund never exceeds the unspent
balance (nor what is left of its top-up), a dispute freezes exactly what is unspent of
the disputed amount, a lost one is the platform's visible loss, money already
distributed stays where it is, and `merci audit` passes after each."""

from __future__ import annotations

from typing import Any

from merci.ids import from_global
from tests.conftest import GraphQLClient, sign_up, system_fetch, system_scalar, unique, wait_for
from tests.payments.conftest import FakeStripe, deliver
from tests.payments.helpers import ME, REFUND, audited, kinds, session_of, spend, start


def paid_supporter(api: str, fake: FakeStripe, pay_db: str, amount: int) -> tuple[GraphQLClient, int, int, str]:
    """A supporter whose top-up of `amount` was paid and credited: (client, account, top-up, payment)."""
    who = sign_up(GraphQLClient(api))
    me, pk = GraphQLClient(api, who["token"]), from_global(who["id"])[1]
    out = start(me, amount)
    topup = from_global(out["topUp"]["id"])[1]
    succeeded, completed = fake.pay(session_of(out["checkoutUrl"]))
    deliver(api, completed)
    wait_for(lambda: system_scalar(pay_db, "select status from topups where id = $1", topup) == "succeeded",
             what="the top-up credited")
    return me, pk, topup, str(succeeded["data"]["object"]["id"])


def refund(me: GraphQLClient, topup: int, amount: int | None = None, key: str | None = None) -> dict[str, Any]:
    from merci.ids import to_global

    input: dict[str, Any] = {"topUpId": to_global("TopUp", topup), "idempotencyKey": key or unique("r")}
    if amount is not None:
        input["amount"] = amount
    return me(REFUND, {"input": input})["requestRefund"]  # type: ignore[no-any-return]


def dispute_status(pay_db: str, dispute: str) -> str | None:
    rows = system_fetch(pay_db, "select status from disputes where id = $1", dispute)
    return str(rows[0]["status"]) if rows else None


def refunds_at_stripe(fake: FakeStripe, payment: str) -> list[int]:
    return [r["amount"] for r in fake.objects("refund") if r["payment_intent"] == payment]


def test_a_refund_never_exceeds_the_unspent_balance(paying_api: str, paying_worker: Any, fake_stripe: FakeStripe,
                                                    pay_db: str) -> None:
    me, pk, topup, payment = paid_supporter(paying_api, fake_stripe, pay_db, 1000)
    spend(pay_db, pk, 400)  # a month's budget charged: 6.00 unspent
    too_much = refund(me, topup, 700)
    assert too_much["refund"] is None and [e["code"] for e in too_much["userErrors"]] == ["INSUFFICIENT_BALANCE"]
    assert "6.00" in too_much["userErrors"][0]["message"]
    for bad, code in ((0, "AMOUNT_TOO_SMALL"), (-100, "AMOUNT_TOO_SMALL")):
        assert [e["code"] for e in refund(me, topup, bad)["userErrors"]] == [code]
    assert [e["code"] for e in refund(me, topup + 10_000)["userErrors"]] == ["NOT_FOUND"]
    out = refund(me, topup, key="all")  # all that is refundable: 6.00
    assert out["userErrors"] == [] and out["refund"]["amount"] == {"amount": 600}
    assert refund(me, topup, key="all")["refund"]["id"] == out["refund"]["id"]  # a retry: the same refund
    wait_for(lambda: me(ME)["me"]["refunds"]["edges"][0]["node"]["status"] == "SUCCEEDED", what="the refund sent")
    assert refunds_at_stripe(fake_stripe, payment) == [600]
    assert me(ME)["me"]["balance"]["amount"] == 0 and kinds(pay_db, pk) == {"supporter": 0}
    nothing_left = refund(me, topup)
    assert [e["code"] for e in nothing_left["userErrors"]] == ["INSUFFICIENT_BALANCE"]
    audited(pay_db)


def test_someone_elses_topup_cannot_be_refunded(paying_api: str, paying_worker: Any, fake_stripe: FakeStripe,
                                                pay_db: str) -> None:
    _, victim, topup, payment = paid_supporter(paying_api, fake_stripe, pay_db, 800)
    thief = sign_up(GraphQLClient(paying_api))
    out = refund(GraphQLClient(paying_api, thief["token"]), topup)
    assert out["refund"] is None and [e["code"] for e in out["userErrors"]] == ["NOT_FOUND"]
    assert refunds_at_stripe(fake_stripe, payment) == [] and kinds(pay_db, victim) == {"supporter": 800}


def test_a_dispute_freezes_the_unspent_part_and_a_lost_one_is_the_platforms_loss(
        paying_api: str, paying_worker: Any, fake_stripe: FakeStripe, pay_db: str) -> None:
    me, pk, topup, payment = paid_supporter(paying_api, fake_stripe, pay_db, 1000)
    spend(pay_db, pk, 300)  # distributed already: it stays where it went
    distributed = system_scalar(pay_db, "select coalesce(sum(e.amount), 0) from entries e join ledger_accounts la"
                                " on la.id = e.ledger_account_id where la.kind = 'platform_fee'")
    opened = fake_stripe.dispute(payment)
    dispute = opened["data"]["object"]["id"]
    for _ in range(2):
        assert deliver(paying_api, opened).status_code == 200
    wait_for(lambda: me(ME)["me"]["frozen"]["amount"] == 700, what="the unspent 7.00 frozen")
    assert me(ME)["me"]["balance"]["amount"] == 0
    assert kinds(pay_db, pk) == {"supporter": 0, "frozen": 700}
    blocked = refund(me, topup)
    assert [e["code"] for e in blocked["userErrors"]] == ["DISPUTED"]
    audited(pay_db)

    lost = fake_stripe.event("charge.dispute.closed", dispute, status="lost")
    assert deliver(paying_api, lost).status_code == 200
    wait_for(lambda: dispute_status(pay_db, dispute) == "lost",
             what="the dispute lost")
    assert kinds(pay_db, pk) == {"supporter": 0, "frozen": 0}
    lines = system_fetch(pay_db, "select la.kind, e.amount from journals j join entries e on e.journal_id = j.id"
                         " join ledger_accounts la on la.id = e.ledger_account_id where j.idem_key = $1 order by 1",
                         f"dispute:{dispute}:lost")
    # The card holder gets 10.00: 7.00 frozen, 3.00 the platform's loss (what was spent).
    assert [(r["kind"], r["amount"]) for r in lines] == [("external", 1000), ("frozen", -700), ("platform_cost", -300)]
    assert system_scalar(pay_db, "select coalesce(sum(e.amount), 0) from entries e join ledger_accounts la"
                         " on la.id = e.ledger_account_id where la.kind = 'platform_fee'") == distributed
    audited(pay_db)


def test_a_dispute_closed_before_it_opened_and_won(paying_api: str, paying_worker: Any, fake_stripe: FakeStripe,
                                                   pay_db: str) -> None:
    me, pk, _, payment = paid_supporter(paying_api, fake_stripe, pay_db, 500)
    opened = fake_stripe.dispute(payment, amount=500)
    dispute = opened["data"]["object"]["id"]
    won = fake_stripe.event("charge.dispute.closed", dispute, status="won")
    assert deliver(paying_api, won).status_code == 200  # the close first
    wait_for(lambda: dispute_status(pay_db, dispute) == "won",
             what="the dispute won")
    assert deliver(paying_api, opened).status_code == 200  # then its opening: nothing more
    wait_for(lambda: system_scalar(pay_db, "select processed_at is not null from stripe_events where id = $1",
                                   opened["id"]), what="the late opening applied")
    assert me(ME)["me"]["balance"]["amount"] == 500 and me(ME)["me"]["frozen"]["amount"] == 0
    assert kinds(pay_db, pk) == {"supporter": 500, "frozen": 0}
    audited(pay_db)
