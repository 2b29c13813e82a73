"""Payment providers: money coming in from outside. All behind one interface; the
`dev` provider credits at once, and only in the environments named for it
(config.DEV_ENVIRONMENTS: development and test): staging, production, or an environment
added later, refuse it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Protocol

from merci.config import DEV_ENVIRONMENTS
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

    def __init__(self, *, env: str) -> None:
        self.env = env

    async def charge(self, *, account_id: int, amount: Money, idempotency_key: str) -> Charge:
        if self.env not in DEV_ENVIRONMENTS:
            raise UserError("PROVIDER_UNAVAILABLE", f"the dev payment provider is disabled in {self.env}")
        reference = idempotency_key or secrets.token_hex(12)
        return Charge(self.name, f"{account_id}:{reference}", amount)


def provider_for(name: str, *, env: str) -> PaymentProvider:
    """The provider `name` in the environment `env` (MERCI_ENV)."""
    if name == "dev":
        if env not in DEV_ENVIRONMENTS:
            raise UserError("PROVIDER_UNAVAILABLE", f"the dev payment provider is disabled in {env}", "provider")
        return DevProvider(env=env)
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
    """Sends instantly, for development, demos and tests; refused elsewhere."""

    name = "dev"

    def __init__(self, *, env: str) -> None:
        self.env = env

    async def send(self, *, account_id: int, amount: Money, idempotency_key: str) -> Transfer:
        if self.env not in DEV_ENVIRONMENTS:
            raise PayoutRefused(f"the dev payout provider is disabled in {self.env}")
        return Transfer(self.name, f"dev:{idempotency_key}")


def payout_provider_for(name: str, *, env: str) -> PayoutProvider:
    """The payout provider `name` in the environment `env` (MERCI_ENV)."""
    if name == "dev":
        if env not in DEV_ENVIRONMENTS:
            raise UserError("PROVIDER_UNAVAILABLE", f"the dev payout provider is disabled in {env}", "provider")
        return DevPayoutProvider(env=env)
    raise UserError("UNKNOWN_PROVIDER", f"unknown payout provider {name!r}", "provider")
