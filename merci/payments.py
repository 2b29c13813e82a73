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
