from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, cast

import asyncpg
import strawberry
from strawberry.scalars import JSON

from api.accounts.loaders import account_by_id
from api.clicks.types import Click, ClickReceipt, ClickStatus
from api.months.types import Month, MonthlyEarning, MonthStatus, Share
from api.payments.types import CreatorStatement, PayoutMethod, Refund, Statement, TopUp
from api.payouts.types import Payout
from api.subscriptions.types import ThingSubscription
from api.tenants.types import Tenant
from api.things.types import Thing
from graph.context import Info
from graph.errors import ClientError
from graph.money import Money
from graph.relay import Connection, Counter, Node, decode_period_cursor, from_items, paginate, paginate_each, window
from merci import (
    account_data,
    accounts,
    budgets,
    clicks,
    months,
    payout_methods,
    payouts,
    refunds,
    statements,
    subscriptions,
    things,
    topups,
)
from merci.ids import from_global, to_global
from merci.payouts import Payout as DomainPayout
from merci.periods import PeriodError, parse_period, period_of
from merci.refunds import Refund as DomainRefund
from merci.topups import TopUp as DomainTopUp


@strawberry.federation.type(keys=["id"], description="A creator's public profile.")
class Creator(Node):
    id: strawberry.ID
    handle: str
    display_name: str
    pk: strawberry.Private[int]

    @staticmethod
    def from_row(row: dict[str, Any]) -> Creator:
        return Creator(
            id=strawberry.ID(to_global("Creator", row["id"])), pk=row["id"],
            handle=row["handle"], display_name=row["display_name"],
        )

    @classmethod
    async def resolve_reference(cls, info: Info, id: strawberry.ID) -> Creator | None:
        _, pk = from_global(id, expect="Creator")
        row = await info.context.loader("account", account_by_id).load(pk)
        return Creator.from_row(row) if row else None

    @strawberry.field(description="The creator's things, newest first (hidden ones only to who may see them: see "
                                  "`Thing.hidden`).")
    async def things(self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
                     before: str | None = None) -> Connection[Thing]:
        listing = things.owned_by(owner_id=self.pk, tenant_wide=info.context.principal.tenant_wide)
        return await paginate_each(info.context, listing, window(first, after, last, before),
                                   lambda r: Thing.from_row(dict(r)), cursor_of=lambda t: t.pk)


@strawberry.type(description="The logged-in account, with its private fields.")
class Account(Node):
    id: strawberry.ID
    handle: str
    display_name: str
    email: str
    email_verified: bool = strawberry.field(description="Whether the email was verified by the link mailed to it: "
                                                        "until then no money moves (EMAIL_NOT_VERIFIED).")
    is_tenant_admin: bool
    is_platform_admin: bool
    created_at: datetime
    pk: strawberry.Private[int]
    tenant_pk: strawberry.Private[int]

    @strawberry.field
    async def tenant(self, info: Info) -> Tenant | None:
        return await Tenant.load(info, self.tenant_pk)

    @strawberry.field
    def creator(self) -> Creator:
        return Creator(id=strawberry.ID(to_global("Creator", self.pk)), pk=self.pk,
                       handle=self.handle, display_name=self.display_name)

    @strawberry.field(description="Prepaid money that funds the monthly budget.")
    async def balance(self, info: Info) -> Money:
        cur = info.context.settings.currency
        async with info.context.tx() as conn:
            return Money.make(await budgets.balance(conn, account_id=self.pk, currency=cur), cur)

    @strawberry.field(description="What is split among this month's clicks.")
    async def monthly_budget(self, info: Info) -> Money:
        s = info.context.settings
        async with info.context.tx() as conn:
            return Money.make(await budgets.monthly_budget(conn, account_id=self.pk, default=s.default_budget),
                              s.currency)

    @strawberry.field(description="A creator's earnings not yet paid out.")
    async def earnings(self, info: Info) -> Money:
        cur = info.context.settings.currency
        async with info.context.tx() as conn:
            return Money.make(await budgets.earnings(conn, account_id=self.pk, currency=cur), cur)

    @strawberry.field(description="Your payouts, newest first (only your own: empty for anyone else).")
    async def payouts(self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
                      before: str | None = None) -> Connection[Payout]:
        return await paginate(info.context.tx, payouts.of_account(account_id=self.pk),
                              window(first, after, last, before), lambda r: Payout.of(DomainPayout.of(r)),
                              cursor_of=lambda p: p.pk)

    @strawberry.field(description="Your card top-ups, newest first (only your own: empty for anyone else).")
    async def top_ups(self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
                      before: str | None = None) -> Connection[TopUp]:
        return await paginate(info.context.tx, topups.of_account(account_id=self.pk),
                              window(first, after, last, before), lambda r: TopUp.of(DomainTopUp.of(r)),
                              cursor_of=lambda t: t.pk)

    @strawberry.field(description="Your refunds, newest first (only your own: empty for anyone else).")
    async def refunds(self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
                      before: str | None = None) -> Connection[Refund]:
        return await paginate(info.context.tx, refunds.of_account(account_id=self.pk),
                              window(first, after, last, before), lambda r: Refund.of(DomainRefund.of(r)),
                              cursor_of=lambda r: r.pk)

    @strawberry.field(description="Money a dispute on one of your payments holds: neither spendable nor "
                                  "refundable until the dispute ends. Your own only.")
    async def frozen(self, info: Info) -> Money:
        cur = info.context.settings.currency
        async with info.context.tx() as conn:
            return Money.make(await refunds.frozen(conn, account_id=self.pk, currency=cur), cur)

    @strawberry.field(description="How your payouts reach you (none chosen: null). Your own only.")
    async def payout_method(self, info: Info) -> PayoutMethod | None:
        async with info.context.tx() as conn:
            m = await payout_methods.of_account(conn, self.pk)
        return None if m is None or info.context.principal.account_id != self.pk else PayoutMethod.of(m)

    @strawberry.field(description="Earnings that a payout may take now: not yet paid out, nor reserved by a "
                                  "pending payout. Your own only (zero for anyone else).")
    async def payout_available(self, info: Info) -> Money:
        cur = info.context.settings.currency
        if info.context.principal.account_id != self.pk:
            return Money.make(0, cur)
        async with info.context.tx() as conn:
            return Money.make(max(await payouts.available(conn, account_id=self.pk, currency=cur), 0), cur)

    @strawberry.field(description="Earnings per closed month (and escrow releases), newest first.")
    async def earnings_by_month(self, info: Info) -> list[MonthlyEarning]:
        cur = info.context.settings.currency
        async with info.context.tx() as conn:
            rows = await months.earnings_by_month(conn, account_id=self.pk, currency=cur)
        return [MonthlyEarning(period=f"{p:%Y-%m}", amount=Money.make(a, cur)) for p, a in rows]

    @strawberry.field(description="A month (YYYY-MM, default: this month): the projected split while open, "
                      "what was posted once closed.")
    async def month(self, info: Info, period: str | None = None) -> Month:
        async with info.context.tx() as conn:
            return await _month(info, conn, self.pk, _period(period))

    @strawberry.field(description="Your statement of a month (YYYY-MM, default: this month): with `month(period:)`, "
                                  "where every cent went. Your own only (null for anyone else).")
    async def statement(self, info: Info, period: str | None = None) -> Statement | None:
        if info.context.principal.account_id != self.pk:
            return None
        p, s = _period(period), info.context.settings
        async with info.context.tx() as conn:
            mine = await statements.supporter(conn, account_id=self.pk, period=p, currency=s.currency,
                                              default_budget=s.default_budget)
            made = await statements.creator(conn, account_id=self.pk, period=p, currency=s.currency)

        def money(minor: int) -> Money:
            return Money.make(minor, s.currency)

        return Statement(period=f"{p:%Y-%m}", topped_up=money(mine.topped_up), refunded=money(mine.refunded),
                         frozen=money(mine.frozen), balance_end=money(mine.balance_end),
                         creator=CreatorStatement(earned=money(made.earned), supporters=made.supporters,
                                                  paid_out=money(made.paid_out)),
                         pdf_path=f"/account/statements/{p:%Y-%m}.pdf")

    @strawberry.field(description="The months you clicked in, newest first: each as `month(period:)` tells it.")
    async def months(self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
                     before: str | None = None) -> Connection[Month]:
        w = window(first, after, last, before, decode=decode_period_cursor)
        listing = months.clicked(supporter_id=self.pk)
        async with info.context.tx() as conn:  # a page of months, in one transaction
            page = await listing.page(conn, w)
            items = [await _month(info, conn, self.pk, r["period"]) for r in page.rows]
        return from_items(items, cursor_of=lambda m: f"{m.period}-01", has_next=page.has_next,
                          has_previous=page.has_previous, counter=Counter.of(info.context.tx, listing.count))

    @strawberry.field(description="Stored clicks of a month (YYYY-MM, default: this month), newest first.")
    async def clicks(self, info: Info, period: str | None = None, first: int | None = None,
                     after: str | None = None, last: int | None = None,
                     before: str | None = None) -> Connection[Click]:
        listing = clicks.of_supporter(supporter_id=self.pk, period=_period(period))
        return await paginate(info.context.tx, listing, window(first, after, last, before),
                              lambda r: Click.from_row(dict(r)), cursor_of=lambda c: c.pk)

    @strawberry.field(description="What became of a click sent with `flattr`, by its idempotency key "
                                  "(ACCEPTED or REFUSED for good, PENDING while queued, UNKNOWN if never received).")
    async def click_receipt(self, info: Info, idempotency_key: str) -> ClickReceipt:
        async with info.context.tx() as conn:
            r = await clicks.receipt(conn, supporter_id=self.pk, key=idempotency_key)
        return ClickReceipt(idempotency_key=idempotency_key, status=ClickStatus(r.status), reason=r.code,
                            period=None if r.period is None else f"{r.period:%Y-%m}", thing_pk=r.thing_id)

    @strawberry.field(description="The supporter's subscriptions, newest first.")
    async def subscriptions(self, info: Info, first: int | None = None,
                            after: str | None = None) -> Connection[ThingSubscription]:
        return await paginate(info.context.tx, subscriptions.of_supporter(supporter_id=self.pk), window(first, after),
                              lambda r: ThingSubscription.from_row(dict(r)), cursor_of=lambda s: s.pk)

    @strawberry.field(description="Everything Merci keeps about you, as one JSON document: profile, budget changes, "
                                  "clicks, subscriptions, the entries of your ledger accounts, payouts, sites, things "
                                  "and partner links. Your own only.")
    async def data_export(self, info: Info) -> JSON:
        if info.context.principal.account_id != self.pk:
            raise ClientError("only your own account can be exported", "FORBIDDEN")
        async with info.context.tx() as conn:
            return cast(JSON, await account_data.export(conn, account_id=self.pk))

    @staticmethod
    async def load(info: Info, pk: int) -> Account | None:
        """Only the caller's own account: private fields never leave their owner."""
        if info.context.principal.account_id != pk:
            return None
        async with info.context.tx() as conn:
            row = await accounts.own_account(conn, account_id=pk)
        if row is None:
            return None
        return Account(
            id=strawberry.ID(to_global("Account", row["id"])), pk=row["id"], tenant_pk=row["tenant_id"],
            handle=row["handle"], display_name=row["display_name"], email=row["email"],
            email_verified=row["email_verified_at"] is not None, is_tenant_admin=row["is_tenant_admin"],
            is_platform_admin=row["is_platform_admin"],
            created_at=row["created_at"],
        )


async def _month(info: Info, conn: asyncpg.Connection, supporter_id: int, period: date) -> Month:
    s = info.context.settings
    m = await months.supporter_month(conn, supporter_id=supporter_id, period=period, default_budget=s.default_budget,
                                     currency=s.currency)
    return Month(
        period=f"{m.period:%Y-%m}", status=MonthStatus(m.status), budget=Money.make(m.budget, s.currency),
        charge=Money.make(m.charge, s.currency), fee=Money.make(m.fee, s.currency), clicks=m.clicks,
        shares=[Share(amount=Money.make(x.amount, s.currency), in_escrow=x.in_escrow, thing_pk=x.thing_id)
                for x in m.shares],
    )


def _period(text: str | None) -> date:
    if text is None:
        return period_of(datetime.now(UTC))
    try:
        return parse_period(text)
    except PeriodError as exc:
        raise ClientError(f"period must be YYYY-MM, not {text!r}", "BAD_PERIOD") from exc

