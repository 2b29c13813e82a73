from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from api.accounts.loaders import account_by_id
from api.things.loaders import clicks_in_period, thing_by_id
from graph.context import Info
from graph.relay import Node
from merci.ids import from_global, to_global
from merci.periods import period_of

if TYPE_CHECKING:
    from api.accounts.types import Creator


@strawberry.federation.type(keys=["id"], description="Anything with a URL that can be clicked.")
class Thing(Node):
    id: strawberry.ID
    url: str
    title: str
    description: str
    category: str
    language: str | None
    tags: list[str]
    hidden: bool = strawberry.field(description=(
        "Unlisted: shown only to its owner, its tenant's admins and API keys, and the supporters who clicked or "
        "subscribed to it; to anyone else it does not exist. Its button still takes clicks."))
    created_at: datetime
    claimed: bool = strawberry.field(description="False for an auto-submitted thing nobody has claimed yet.")
    pk: strawberry.Private[int]
    owner_pk: strawberry.Private[int | None]

    @staticmethod
    def from_row(r: dict[str, Any]) -> Thing:
        return Thing(
            id=strawberry.ID(to_global("Thing", r["id"])), pk=r["id"], owner_pk=r["owner_id"], url=r["url"],
            title=r["title"], description=r["description"], category=r["category"], language=r["language"],
            tags=list(r["tags"]), hidden=r["hidden"], created_at=r["created_at"], claimed=r["owner_id"] is not None,
        )

    @staticmethod
    async def load(info: Info, pk: int) -> Thing | None:
        row = await info.context.loader("thing", thing_by_id).load(pk)
        return Thing.from_row(row) if row else None

    @classmethod
    async def resolve_reference(cls, info: Info, id: strawberry.ID) -> Thing | None:
        _, pk = from_global(id, expect="Thing")
        return await Thing.load(info, pk)

    @strawberry.field(description="The creator who owns it; null while unclaimed.")
    async def owner(self, info: Info) -> Annotated[Creator, strawberry.lazy("api.accounts.types")] | None:
        from api.accounts.types import Creator

        if self.owner_pk is None:
            return None
        row = await info.context.loader("account", account_by_id).load(self.owner_pk)
        return Creator.from_row(row) if row else None

    @strawberry.field(description="Clicks this month (all supporters).")
    async def clicks_this_month(self, info: Info) -> int:
        period = period_of(datetime.now(UTC))
        return await info.context.loader(f"clicks:{period}", lambda c: clicks_in_period(c, period)).load(self.pk)
