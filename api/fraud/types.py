from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry

from api.accounts.loaders import account_by_id
from api.accounts.types import Creator
from api.things.types import Thing
from graph.context import Info
from merci.ids import to_global


@strawberry.enum(description="Why detection held a click (docs/fraud.md).")
class FlagReason(Enum):
    RING = strawberry.enum_value("ring", description="Accounts clicking each other's things, one of them new.")
    BURST = strawberry.enum_value("burst", description="Many clicks within an hour from a new account.")
    SHARED_ADDRESS = strawberry.enum_value("shared_address", description=(
        "Many accounts clicking one owner's things from one client address."))


@strawberry.enum(description="Where a flagged click stands.")
class FlagStatus(Enum):
    HELD = strawberry.enum_value("held", description="Waiting for review: it counts nothing.")
    RELEASED = strawberry.enum_value("released", description=(
        "Released: it counts, unless its month's close had begun (`late`)."))
    REJECTED = strawberry.enum_value("rejected", description="Rejected: it never counts.")


@strawberry.type(description="Platform admins: a click that detection held out of the month's close.")
class FlaggedClick:
    click_id: strawberry.ID = strawberry.field(description="The click's global id (Click).")
    period: str
    accepted_at: datetime
    reasons: list[FlagReason]
    flagged_at: datetime
    status: FlagStatus
    reviewed_at: datetime | None
    late: bool = strawberry.field(description=(
        "Reviewed after its month's close had begun: it counted nothing in that month, and counts nowhere else."))
    pk: strawberry.Private[int]
    thing_pk: strawberry.Private[int]
    supporter_pk: strawberry.Private[int]
    reviewer_pk: strawberry.Private[int | None]

    @staticmethod
    def from_row(r: dict[str, Any]) -> FlaggedClick:
        return FlaggedClick(
            click_id=strawberry.ID(to_global("Click", r["click_id"])), pk=r["click_id"],
            period=f"{r['period']:%Y-%m}", accepted_at=r["accepted_at"],
            reasons=[FlagReason(x) for x in r["reasons"]], flagged_at=r["flagged_at"], status=FlagStatus(r["status"]),
            reviewed_at=r["reviewed_at"], late=r["late"], thing_pk=r["thing_id"], supporter_pk=r["supporter_id"],
            reviewer_pk=r["reviewed_by"])

    @strawberry.field
    async def thing(self, info: Info) -> Thing | None:
        return await Thing.load(info, self.thing_pk)

    @strawberry.field(description="Who clicked (their public profile).")
    async def supporter(self, info: Info) -> Creator | None:
        row = await info.context.loader("account", account_by_id).load(self.supporter_pk)
        return Creator.from_row(row) if row else None

    @strawberry.field(description="The platform admin who released or rejected it.")
    async def reviewed_by(self, info: Info) -> Creator | None:
        if self.reviewer_pk is None:
            return None
        row = await info.context.loader("account", account_by_id).load(self.reviewer_pk)
        return Creator.from_row(row) if row else None
