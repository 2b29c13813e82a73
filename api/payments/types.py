from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from graph.money import Money
from merci.ids import to_global
from merci.payout_methods import PayoutMethod as DomainMethod
from merci.refunds import Refund as DomainRefund
from merci.topups import TopUp as DomainTopUp


@strawberry.enum(description="Where a card top-up stands: the balance grows only when Stripe says it is paid.")
class TopUpStatus(Enum):
    CREATED = "created"
    OPEN = "open"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"


@strawberry.type(description="A card top-up through Stripe Checkout.")
class TopUp:
    id: strawberry.ID
    amount: Money
    status: TopUpStatus
    checkout_url: str | None = strawberry.field(description="Where to pay, while the top-up is open.")
    fee: Money | None = strawberry.field(description="What Stripe kept (the platform pays it, not you).")
    idempotency_key: str
    created_at: datetime
    settled_at: datetime | None
    pk: strawberry.Private[int]

    @staticmethod
    def of(t: DomainTopUp) -> TopUp:
        return TopUp(id=strawberry.ID(to_global("TopUp", t.id)), pk=t.id, amount=Money.make(t.amount, t.currency),
                     status=TopUpStatus(t.status), checkout_url=t.checkout_url if t.status == "open" else None,
                     fee=None if t.fee is None else Money.make(t.fee, t.currency), idempotency_key=t.idempotency_key,
                     created_at=t.created_at, settled_at=t.settled_at)


@strawberry.enum(description="Where a refund stands.")
class RefundStatus(Enum):
    REQUESTED = "requested"
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@strawberry.type(description="Unspent balance sent back to the card a top-up came from.")
class Refund:
    id: strawberry.ID
    amount: Money
    status: RefundStatus
    top_up_id: strawberry.ID
    reason: str | None = strawberry.field(description="Why it failed (the money is back in your balance).")
    created_at: datetime
    settled_at: datetime | None
    pk: strawberry.Private[int]

    @staticmethod
    def of(r: DomainRefund) -> Refund:
        return Refund(id=strawberry.ID(to_global("Refund", r.id)), pk=r.id, amount=Money.make(r.amount, r.currency),
                      status=RefundStatus(r.status), top_up_id=strawberry.ID(to_global("TopUp", r.topup_id)),
                      reason=r.reason, created_at=r.created_at, settled_at=r.settled_at)


@strawberry.enum(description="How a creator is paid.")
class PayoutMethodKind(Enum):
    DEV = "dev"
    STRIPE = "stripe"
    SEPA = "sepa"


@strawberry.type(description="How your payouts reach you.")
class PayoutMethod:
    method: PayoutMethodKind
    iban: str | None = strawberry.field(description="Your IBAN, masked (SEPA).")
    holder: str | None
    stripe_connected: bool = strawberry.field(description="Whether a Stripe account was set up for you.")
    stripe_details_submitted: bool = strawberry.field(description="Stripe has your details (onboarding done).")
    stripe_payouts_enabled: bool = strawberry.field(description="Stripe may pay you out.")

    @staticmethod
    def of(m: DomainMethod) -> PayoutMethod:
        return PayoutMethod(method=PayoutMethodKind(m.method), iban=m.iban_masked, holder=m.holder,
                            stripe_connected=m.stripe_account_id is not None,
                            stripe_details_submitted=m.stripe_details_submitted,
                            stripe_payouts_enabled=m.stripe_payouts_enabled)


@strawberry.type(description="What a card top-up may be.")
class TopUpOptions:
    presets: list[Money]
    minimum: Money
    maximum: Money
    cards: bool = strawberry.field(description="Whether card top-ups (Stripe) are available here.")


@strawberry.type(description="A creator's month: what the month's closes paid them, from how many supporters, "
                             "and what was paid out during the month.")
class CreatorStatement:
    earned: Money
    supporters: int
    paid_out: Money


@strawberry.type(description="A monthly statement: the supporter's month (charged, fee, where every cent went) "
                             "with the money that came and went, and the creator's month. Also as a PDF: "
                             "`pdfPath`.")
class Statement:
    period: str
    topped_up: Money = strawberry.field(description="Top-ups credited during the month.")
    refunded: Money = strawberry.field(description="Refunds sent back to a card during the month.")
    frozen: Money = strawberry.field(description="What disputes froze during the month (net of what came back).")
    balance_end: Money = strawberry.field(description="The balance at the month's end (its close included).")
    creator: CreatorStatement
    pdf_path: str = strawberry.field(description="The statement as a PDF, on this site (the session's account only).")
