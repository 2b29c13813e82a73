"""Payouts out: Stripe Connect (the creator's Express account, its status, a transfer
created once when the job is retried after a crash) and SEPA batches (IBANs checked by
schwifty, a pain.001 valid against the ISO 20022 schema, sent when the operator confirms)."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import sepaxml
from lxml import etree

from merci import config, payouts, sepa
from merci.ids import from_global
from merci.money import Money
from merci.payments import Transfer
from merci.payout_methods import StripePayoutProvider
from merci.stripe_api import Stripe
from tests.api.test_payouts import _credit
from tests.conftest import GraphQLClient, sign_up, system_scalar, wait_for
from tests.payments.conftest import KEY, SECRET, FakeStripe, deliver
from tests.payments.helpers import audited, kinds

ONBOARD = """mutation { startStripeOnboarding(input: {country: "FR"}) { url userErrors { code field message } } }"""
METHOD = """mutation($input: SetPayoutMethodInput!) { setPayoutMethod(input: $input) {
  payoutMethod { method iban holder stripeConnected stripePayoutsEnabled } userErrors { code field message } } }"""
MINE = "{ me { payoutMethod { method iban stripeConnected stripeDetailsSubmitted stripePayoutsEnabled } } }"
XSD = Path(sepaxml.__file__).parent / "schemas" / "pain.001.001.03.xsd"


def creator(api: str, pay_db: str, earned: int) -> tuple[GraphQLClient, int]:
    who = sign_up(GraphQLClient(api))
    pk = from_global(who["id"])[1]
    if earned:
        asyncio.run(_credit(pay_db, pk, earned))
    return GraphQLClient(api, who["token"]), pk


def settings_for(pay_db: str, fake: FakeStripe, **extra: Any) -> config.Settings:
    return config.Settings(database_url=pay_db, stripe_api_key=KEY, stripe_webhook_secret=SECRET,
                           stripe_api_base=fake.base, **extra).derived()


async def _request(settings: config.Settings, account: int, amount: int, provider: str) -> int:
    conn = await asyncpg.connect(settings.system_database_url)
    try:
        async with conn.transaction():
            tenant = await conn.fetchval("select tenant_id from accounts where id = $1", account)
            p = await payouts.request(conn, tenant_id=tenant, account_id=account, amount=amount, currency="EUR",
                                      threshold=1000, idempotency_key=f"test-{provider}-{account}", provider=provider)
        return p.id
    finally:
        await conn.close()


class Crashing:
    """The worker dies right after Stripe made the transfer, before the journal."""

    name = "stripe"

    def __init__(self, inner: StripePayoutProvider) -> None:
        self.inner = inner

    async def send(self, *, account_id: int, amount: Money, idempotency_key: str) -> Transfer:
        await self.inner.send(account_id=account_id, amount=amount, idempotency_key=idempotency_key)
        raise SystemExit("killed")


def test_a_connect_payout_is_created_once_when_retried_after_a_crash(
        paying_api: str, paying_worker: Any, fake_stripe: FakeStripe, pay_db: str) -> None:
    me, pk = creator(paying_api, pay_db, 3000)
    assert me(MINE)["me"]["payoutMethod"] is None
    refused = me(METHOD, {"input": {"method": "STRIPE"}})["setPayoutMethod"]
    assert [e["code"] for e in refused["userErrors"]] == ["NO_STRIPE_ACCOUNT"]
    link = me(ONBOARD)["startStripeOnboarding"]
    assert link["userErrors"] == [] and link["url"].startswith(fake_stripe.base + "/onboard/acct_")
    again = me(ONBOARD)["startStripeOnboarding"]  # the same account, a fresh link
    account = link["url"].rsplit("/", 1)[1]
    assert again["url"].endswith(account)
    assert [a["id"] for a in fake_stripe.objects("account") if a["metadata"].get("merci_account_id") == str(pk)] \
        == [account]
    assert me(MINE)["me"]["payoutMethod"] == {"method": "STRIPE", "iban": None, "stripeConnected": True,
                                             "stripeDetailsSubmitted": False, "stripePayoutsEnabled": False}
    assert deliver(paying_api, fake_stripe.onboard(account)).status_code == 200  # account.updated
    wait_for(lambda: me(MINE)["me"]["payoutMethod"]["stripePayoutsEnabled"], what="the account's status")

    settings = settings_for(pay_db, fake_stripe)
    payout = asyncio.run(_request(settings, pk, 2000, "stripe"))

    async def crash_then_retry() -> tuple[str, str]:
        conn = await asyncpg.connect(settings.system_database_url)
        try:
            real = StripePayoutProvider(Stripe(settings), conn)
            try:
                await payouts.send(conn, payout_id=payout, provider=Crashing(real))
                crashed = "no crash"
            except SystemExit:
                crashed = await conn.fetchval("select status from payouts where id = $1", payout)
            return crashed, await payouts.send(conn, payout_id=payout, provider=real)
        finally:
            await conn.close()

    assert asyncio.run(crash_then_retry()) == ("pending", "sent")
    transfers = [t for t in fake_stripe.objects("transfer") if t["destination"] == account]
    assert [(t["amount"], t["metadata"]["merci_payout"]) for t in transfers] == [(2000, f"merci-payout-{payout}")]
    calls = [c for c in fake_stripe.state()["calls"]
             if c["path"] == "/v1/transfers" and c["key"] == f"merci-payout-{payout}"]
    assert len(calls) == 2  # asked twice, made once
    assert system_scalar(pay_db, "select reference from payouts where id = $1", payout) == transfers[0]["id"]
    assert kinds(pay_db, pk) == {"creator": 1000, "payout": 2000}
    audited(pay_db)


def test_nobody_is_paid_into_someone_elses_account(paying_api: str, fake_stripe: FakeStripe, pay_db: str) -> None:
    """No input names a Connect account: Merci pays the one it created for the creator."""
    me, pk = creator(paying_api, pay_db, 0)
    r = me.raw('mutation { setPayoutMethod(input: {method: STRIPE, stripeAccountId: "acct_someone"})'
               ' { userErrors { code } } }')
    assert "errors" in r.json()
    assert system_scalar(pay_db, "select count(*) from payout_methods where account_id = $1", pk) == 0


def test_a_sepa_batch_validates_and_pays_when_confirmed(paying_api: str, fake_stripe: FakeStripe,
                                                        pay_db: str) -> None:
    me, pk = creator(paying_api, pay_db, 5000)
    for iban, code in (("DE89 3704 0044 0532 0130 01", "INVALID_IBAN"), ("hello", "INVALID_IBAN"),
                       ("", "INVALID_IBAN")):
        out = me(METHOD, {"input": {"method": "SEPA", "iban": iban, "holder": "Ada Lovelace"}})["setPayoutMethod"]
        assert [e["code"] for e in out["userErrors"]] == [code], iban
    out = me(METHOD, {"input": {"method": "SEPA", "iban": "DE89 3704 0044 0532 0130 00", "holder": ""}})
    assert [e["code"] for e in out["setPayoutMethod"]["userErrors"]] == ["INVALID_HOLDER"]
    ok = me(METHOD, {"input": {"method": "SEPA", "iban": "de89 3704 0044 0532 0130 00", "holder": "Ada Lovelace"}})
    assert ok["setPayoutMethod"]["payoutMethod"] == {"method": "SEPA", "iban": "DE89 •••• 3000",
                                                     "holder": "Ada Lovelace", "stripeConnected": False,
                                                     "stripePayoutsEnabled": False}
    settings = settings_for(pay_db, fake_stripe, sepa_debtor_name="Merci SAS",
                            sepa_debtor_iban="FR1420041010050500013M02606", sepa_debtor_bic="PSSTFRPPLIL")
    payout = asyncio.run(_request(settings, pk, 3000, "sepa"))

    async def run() -> tuple[int | None, str, dict[str, int], dict[str, int]]:
        conn = await asyncpg.connect(settings.system_database_url)
        try:
            batch = await sepa.batch(conn, settings, execution=date(2030, 1, 15))
            xml = await conn.fetchval("select xml from sepa_batches where id = $1", batch)
            assert await conn.fetchval("select status from payouts where id = $1", payout) == "pending"
            first = await sepa.confirm(conn, batch_id=batch)  # type: ignore[arg-type]
            second = await sepa.confirm(conn, batch_id=batch)  # type: ignore[arg-type]
            return batch, xml, first, second
        finally:
            await conn.close()

    batch, xml, first, second = asyncio.run(run())
    assert batch is not None and first == {"sent": 1} and second == {"sent": 1}
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    doc = etree.fromstring(xml.encode())
    assert schema.validate(doc), schema.error_log
    ns = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"}
    assert doc.findtext(".//p:CdtTrfTxInf/p:CdtrAcct/p:Id/p:IBAN", namespaces=ns) == "DE89370400440532013000"
    assert doc.findtext(".//p:CdtTrfTxInf/p:Amt/p:InstdAmt", namespaces=ns) == "30.00"
    assert system_scalar(pay_db, "select status from payouts where id = $1", payout) == "sent"
    assert kinds(pay_db, pk) == {"creator": 2000, "payout": 3000}
    audited(pay_db)
