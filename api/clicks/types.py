from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry

from api.things.types import Thing
from graph.context import Info
from graph.relay import Node
from merci.ids import to_global


@strawberry.enum(description="What became of a click: ACCEPTED and REFUSED are final; PENDING settles (see "
                             "docs/api.md for how long to poll); UNKNOWN means send it again with the same key.")
class ClickStatus(Enum):
    PENDING = strawberry.enum_value("pending", description="Accepted by the API and queued: the workers decide.")
    ACCEPTED = strawberry.enum_value("accepted", description="Stored: it counts in its month.")
    REFUSED = strawberry.enum_value("refused", description=(
        "Refused, by the API at once or by the workers; `reason` says why (a userErrors code)."))
    UNKNOWN = strawberry.enum_value("unknown", description=(
        "Never received with this key, or received so long ago that it is forgotten. Sending it again with the "
        "same key is safe: a click counts once per key."))
    REJECTED = strawberry.enum_value("rejected", deprecation_reason="Never answered any more: read REFUSED.")


@strawberry.enum
class ClickSource(Enum):
    CLICK = "click"
    SUBSCRIPTION = "subscription"
    PARTNER = "partner"


@strawberry.type(description="A click stored for a month.")
class Click(Node):
    id: strawberry.ID
    period: str
    accepted_at: datetime
    source: ClickSource
    idempotency_key: str
    pk: strawberry.Private[int]
    thing_pk: strawberry.Private[int]

    @staticmethod
    def from_row(r: dict[str, Any]) -> Click:
        return Click(id=strawberry.ID(to_global("Click", r["id"])), pk=r["id"], period=f"{r['period']:%Y-%m}",
                     accepted_at=r["accepted_at"], source=ClickSource(r["source"]),
                     idempotency_key=r["idempotency_key"], thing_pk=r["thing_id"])

    @strawberry.field
    async def thing(self, info: Info) -> Thing | None:
        return await Thing.load(info, self.thing_pk)


@strawberry.type(description="What became of a click sent with `flattr`.")
class ClickReceipt:
    idempotency_key: str
    status: ClickStatus
    reason: str | None = strawberry.field(description="Why it was refused (a userErrors code) when REFUSED.")
    period: str | None
    thing_pk: strawberry.Private[int | None]

    @strawberry.field
    async def thing(self, info: Info) -> Thing | None:
        return None if self.thing_pk is None else await Thing.load(info, self.thing_pk)
