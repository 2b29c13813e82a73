from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from api.accounts.loaders import account_by_id
from api.tenants.types import Tenant
from graph.context import Info
from graph.relay import Node
from merci.ids import from_global, to_global


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


@strawberry.type(description="The logged-in account, with its private fields.")
class Account(Node):
    id: strawberry.ID
    handle: str
    display_name: str
    email: str
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

    @staticmethod
    async def load(info: Info, pk: int) -> Account | None:
        """Only the caller's own account: private fields never leave their owner."""
        if info.context.principal.account_id != pk:
            return None
        async with info.context.tx() as conn:
            row = await conn.fetchrow(
                "select a.id, a.tenant_id, a.handle, a.display_name, a.created_at, p.email,"
                "       p.is_tenant_admin, p.is_platform_admin"
                "  from accounts a join account_private p on p.account_id = a.id where a.id = $1",
                pk,
            )
        if row is None:
            return None
        return Account(
            id=strawberry.ID(to_global("Account", row["id"])), pk=row["id"], tenant_pk=row["tenant_id"],
            handle=row["handle"], display_name=row["display_name"], email=row["email"],
            is_tenant_admin=row["is_tenant_admin"], is_platform_admin=row["is_platform_admin"],
            created_at=row["created_at"],
        )
