from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from graph.money import Money
from merci.ids import to_global
from merci.payouts import Payout as DomainPayout


@strawberry.enum(description="Where a payout stands.")
class PayoutStatus(Enum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


@strawberry.type(description="Earnings sent out to a creator through a payout provider.")
class Payout:
    id: strawberry.ID
    amount: Money
    provider: str
    idempotency_key: str
    status: PayoutStatus
    reference: str | None = strawberry.field(description="The provider's id for the transfer, once sent.")
    reason: str | None = strawberry.field(description="Why it failed.")
    created_at: datetime
    settled_at: datetime | None = strawberry.field(description="When it was sent or failed.")
    pk: strawberry.Private[int]

    @staticmethod
    def of(p: DomainPayout) -> Payout:
        return Payout(id=strawberry.ID(to_global("Payout", p.id)), pk=p.id, amount=Money.make(p.amount, p.currency),
                      provider=p.provider, idempotency_key=p.idempotency_key, status=PayoutStatus(p.status),
                      reference=p.reference, reason=p.reason, created_at=p.created_at, settled_at=p.settled_at)
