from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry

from api.things.types import Thing
from graph.context import Info
from graph.relay import Node
from merci import subscriptions
from merci.ids import to_global

GLOBAL_ID_TYPE = "Subscription"


@strawberry.enum
class ThingSubscriptionStatus(Enum):
    ACTIVE = "active"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


# Not `Subscription`: composition takes an object type named after a root operation
# type as that root (schema { subscription: Subscription }), and the gateways then
# treat this type as GraphQL subscriptions. Global ids keep the "Subscription" prefix,
# so ids handed out before the rename still resolve.
@strawberry.type(description="A standing click on a thing, one per month of the term.")
class ThingSubscription(Node):
    id: strawberry.ID
    months: int
    months_used: int
    start_period: str
    status: ThingSubscriptionStatus
    created_at: datetime
    pk: strawberry.Private[int]
    thing_pk: strawberry.Private[int]

    @staticmethod
    def from_row(r: dict[str, Any]) -> ThingSubscription:
        return ThingSubscription(
            id=strawberry.ID(to_global(GLOBAL_ID_TYPE, r["id"])), pk=r["id"], thing_pk=r["thing_id"],
            months=r["months"], months_used=r["months_used"], start_period=f"{r['start_period']:%Y-%m}",
            status=ThingSubscriptionStatus(r["status"]), created_at=r["created_at"],
        )

    @staticmethod
    async def load(info: Info, pk: int) -> ThingSubscription | None:
        me = info.context.principal.account_id
        if me is None:
            return None
        async with info.context.tx() as conn:
            row = await subscriptions.own_subscription(conn, subscription_id=pk, supporter_id=me)
        return ThingSubscription.from_row(row) if row else None

    @strawberry.field
    async def thing(self, info: Info) -> Thing | None:
        return await Thing.load(info, self.thing_pk)
