from __future__ import annotations

import strawberry

from merci.money import Money as DomainMoney


@strawberry.type(description="An amount of money in integer minor units (cents).")
class Money:
    amount: int = strawberry.field(description="Minor units, e.g. 1050 for 10.50.")
    currency: str
    formatted: str

    @staticmethod
    def of(m: DomainMoney) -> Money:
        return Money(amount=m.minor, currency=m.currency, formatted=m.format())

    @staticmethod
    def make(minor: int, currency: str) -> Money:
        return Money.of(DomainMoney(minor, currency))
