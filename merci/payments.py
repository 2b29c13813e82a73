"""Payment providers: money coming in from outside. All behind one interface; the
`dev` provider credits at once and is refused in production."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Protocol

from merci.errors import UserError
from merci.money import Money


@dataclass(frozen=True)
class Charge:
    provider: str
    reference: str  # the provider's id for this payment: the ledger's idempotency key
    amount: Money


class PaymentProvider(Protocol):
    name: str

    async def charge(self, *, account_id: int, amount: Money, idempotency_key: str) -> Charge: ...


class DevProvider:
    """Credits instantly, for development, demos and tests."""

    name = "dev"

    def __init__(self, *, production: bool) -> None:
        self.production = production

    async def charge(self, *, account_id: int, amount: Money, idempotency_key: str) -> Charge:
        if self.production:
            raise UserError("PROVIDER_UNAVAILABLE", "the dev payment provider is disabled in production")
        reference = idempotency_key or secrets.token_hex(12)
        return Charge(self.name, f"{account_id}:{reference}", amount)


def provider_for(name: str, *, production: bool) -> PaymentProvider:
    if name == "dev":
        return DevProvider(production=production)
    raise UserError("UNKNOWN_PROVIDER", f"unknown payment provider {name!r}", "provider")


# ------------------------------------------------------------------ payouts: money going out


@dataclass(frozen=True)
class Transfer:
    provider: str
    reference: str  # the provider's id for the transfer


class PayoutRefused(Exception):
    """The provider will not send this payout (a closed account, a limit): it fails for good.
    Any other exception is taken as passing trouble, and the send is retried."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PayoutProvider(Protocol):
    name: str

    async def send(self, *, account_id: int, amount: Money, idempotency_key: str) -> Transfer:
        """Send `amount` to the creator; the same key sends it once, however often asked."""
        ...


class DevPayoutProvider:
    """Sends instantly, for development, demos and tests; refused in production."""

    name = "dev"

    def __init__(self, *, production: bool) -> None:
        self.production = production

    async def send(self, *, account_id: int, amount: Money, idempotency_key: str) -> Transfer:
        if self.production:
            raise PayoutRefused("the dev payout provider is disabled in production")
        return Transfer(self.name, f"dev:{idempotency_key}")


def payout_provider_for(name: str, *, production: bool) -> PayoutProvider:
    if name == "dev":
        if production:
            raise UserError("PROVIDER_UNAVAILABLE", "the dev payout provider is disabled in production", "provider")
        return DevPayoutProvider(production=production)
    raise UserError("UNKNOWN_PROVIDER", f"unknown payout provider {name!r}", "provider")
