from __future__ import annotations

from enum import Enum

import strawberry

from api.things.types import Thing
from graph.context import Info
from graph.money import Money


@strawberry.enum
class MonthStatus(Enum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


@strawberry.type(description="One thing's share of a supporter's month.")
class Share:
    amount: Money
    in_escrow: bool = strawberry.field(description="Held for an unclaimed thing until it is claimed.")
    thing_pk: strawberry.Private[int]

    @strawberry.field
    async def thing(self, info: Info) -> Thing | None:
        return await Thing.load(info, self.thing_pk)


@strawberry.type(description="A supporter's month: projected while open, as posted once closed.")
class Month:
    period: str
    status: MonthStatus
    budget: Money = strawberry.field(description="The monthly budget in force for this month.")
    charge: Money = strawberry.field(description="What is (or was) taken: the budget, capped by the balance; "
                                     "nothing when nothing was clicked.")
    fee: Money
    clicks: int
    shares: list[Share]


@strawberry.type(description="A creator's earnings in one month.")
class MonthlyEarning:
    period: str
    amount: Money
