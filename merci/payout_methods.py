"""How a creator is paid: `stripe` (a Connect Express account) or `sepa` (their IBAN),
or `dev` in development and tests.

The Connect account is one Merci creates for the creator (keyed `merci-connect-<their
account id>`) and stores through merci_set_stripe_account, once: the API never takes an
account id from its input, so nobody can name someone else's account to be paid into.
Its status (details submitted, payouts enabled) comes from Stripe's `account.updated`,
for the account Merci stored, and is shown to the creator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException

from merci.errors import UserError
from merci.money import Money
from merci.payments import PayoutRefused, Transfer
from merci.stripe_api import Stripe, StripeError

METHODS = ("dev", "stripe", "sepa")
COLUMNS = "account_id, tenant_id, method, iban, bic, holder, stripe_account_id, stripe_details_submitted," \
          " stripe_payouts_enabled"


@dataclass(frozen=True)
class PayoutMethod:
    account_id: int
    tenant_id: int
    method: str
    iban: str | None
    bic: str | None
    holder: str | None
    stripe_account_id: str | None
    stripe_details_submitted: bool
    stripe_payouts_enabled: bool

    @classmethod
    def of(cls, row: asyncpg.Record) -> PayoutMethod:
        return cls(**dict(row))

    @property
    def iban_masked(self) -> str | None:
        return None if self.iban is None else f"{self.iban[:4]} •••• {self.iban[-4:]}"


def check_iban(iban: object, bic: object | None) -> tuple[str, str | None]:
    """An IBAN (and BIC) a bank will take: checksum, length and bank code, with schwifty."""
    if not isinstance(iban, str) or len(iban) > 50:
        raise UserError("INVALID_IBAN", "an IBAN, such as DE89 3704 0044 0532 0130 00", "iban")
    try:
        parsed = IBAN(iban)
    except SchwiftyException as err:
        raise UserError("INVALID_IBAN", f"this IBAN is not valid: {err}", "iban") from err
    if bic is None or (isinstance(bic, str) and not bic.strip()):
        found = parsed.bic
        return parsed.compact, None if found is None else str(found.compact)
    try:
        return parsed.compact, str(BIC(str(bic)).compact)
    except SchwiftyException as err:
        raise UserError("INVALID_BIC", f"this BIC is not valid: {err}", "bic") from err


def check_holder(holder: object) -> str:
    if not isinstance(holder, str) or not 1 <= len(holder.strip()) <= 70:
        raise UserError("INVALID_HOLDER", "the account holder's name, 1 to 70 characters", "holder")
    return holder.strip()


async def of_account(conn: asyncpg.Connection, account_id: int) -> PayoutMethod | None:
    row = await conn.fetchrow(f"select {COLUMNS} from payout_methods where account_id = $1", account_id)
    return None if row is None else PayoutMethod.of(row)


async def choose(conn: asyncpg.Connection, *, tenant_id: int, account_id: int, method: str,
                 iban: str | None = None, bic: str | None = None, holder: str | None = None) -> PayoutMethod:
    """Set the method (as the creator). `sepa` needs a valid IBAN and holder; `stripe` a
    Connect account (startStripeOnboarding first)."""
    if method not in METHODS:
        raise UserError("UNKNOWN_PROVIDER", f"a payout method is one of {', '.join(METHODS)}", "method")
    current = await of_account(conn, account_id)
    if method == "stripe" and (current is None or current.stripe_account_id is None):
        raise UserError("NO_STRIPE_ACCOUNT", "set up your Stripe account first (startStripeOnboarding)", "method")
    row = await conn.fetchrow(
        "insert into payout_methods (account_id, tenant_id, method, iban, bic, holder) values ($1, $2, $3, $4, $5, $6)"
        " on conflict (account_id) do update set method = excluded.method,"
        "   iban = coalesce(excluded.iban, payout_methods.iban), bic = coalesce(excluded.bic, payout_methods.bic),"
        "   holder = coalesce(excluded.holder, payout_methods.holder), updated_at = now()"
        f" returning {COLUMNS}", account_id, tenant_id, method, iban, bic, holder)
    return PayoutMethod.of(row)


async def onboarding_link(conn: asyncpg.Connection, api: Stripe, *, account_id: int, country: str,
                          return_url: str, refresh_url: str) -> str:
    """An Express onboarding link for the creator's Connect account (created once; as the
    creator, in the caller's transaction)."""
    current = await of_account(conn, account_id)
    acct = current.stripe_account_id if current else None
    if acct is None:
        email = await conn.fetchval("select email from account_private where account_id = $1", account_id)
        made = await api.create_account({
            "type": "express", "country": country, **({"email": email} if email else {}),
            "capabilities": {"transfers": {"requested": True}},
            "metadata": {"merci_account_id": str(account_id)}}, key=f"merci-connect-{account_id}")
        acct = str(made["id"])
        async with conn.transaction():
            if not await conn.fetchval("select merci_set_stripe_account($1)", acct):
                raise UserError("INVALID_STATE", "your payout account changed meanwhile: try again")
    link = await api.create_account_link({"account": acct, "type": "account_onboarding",
                                          "return_url": return_url, "refresh_url": refresh_url},
                                         key=f"merci-connect-link-{account_id}-{acct}-{return_url}"[:255])
    return str(link["url"])


async def account_updated(conn: asyncpg.Connection, account: dict[str, Any]) -> str:
    """Stripe's `account.updated`: the status of an account Merci stored, and no other."""
    done = await conn.execute(
        "update payout_methods set stripe_details_submitted = $2, stripe_payouts_enabled = $3, updated_at = now()"
        " where stripe_account_id = $1", account.get("id"), bool(account.get("details_submitted")),
        bool(account.get("payouts_enabled")))
    return "account status recorded" if done.endswith(" 1") else "ignored: not an account of Merci's creators"


class StripePayoutProvider:
    """Transfers to the creator's Connect account, keyed on the payout (`merci-payout-<id>`):
    the job retried after a crash asks Stripe with the same key and gets the same transfer."""

    name = "stripe"

    def __init__(self, api: Stripe, pool_conn: asyncpg.Connection) -> None:
        self.api, self.conn = api, pool_conn

    async def send(self, *, account_id: int, amount: Money, idempotency_key: str) -> Transfer:
        m = await of_account(self.conn, account_id)
        if m is None or m.stripe_account_id is None:
            raise PayoutRefused("no Stripe account: the creator has not set one up")
        if not m.stripe_payouts_enabled:
            raise PayoutRefused("the creator's Stripe account cannot receive payouts yet (onboarding unfinished)")
        try:
            t = await self.api.create_transfer({
                "amount": amount.minor, "currency": amount.currency.lower(), "destination": m.stripe_account_id,
                "metadata": {"merci_payout": idempotency_key}}, key=idempotency_key)
        except StripeError as err:
            raise PayoutRefused(f"Stripe refused the transfer: {err.message}") from err
        return Transfer(self.name, str(t["id"]))


def check_provider(name: str, method: PayoutMethod | None, *, env: str, stripe_configured: bool) -> str:
    """The provider a payout request may name: `dev` where allowed, `stripe` with a Connect
    account (on a deployment with Stripe), `sepa` with an IBAN."""
    from merci.payments import payout_provider_for

    if name == "stripe":
        if not stripe_configured:
            raise UserError("PROVIDER_UNAVAILABLE", "Stripe payouts are not configured here", "provider")
        if method is None or method.stripe_account_id is None:
            raise UserError("NO_STRIPE_ACCOUNT", "set up your Stripe account first (startStripeOnboarding)",
                            "provider")
        return name
    if name == "sepa":
        if method is None or method.iban is None:
            raise UserError("NO_IBAN", "give your IBAN first (setPayoutMethod)", "provider")
        return name
    payout_provider_for(name, env=env)  # dev where allowed, or UNKNOWN_PROVIDER
    return name
