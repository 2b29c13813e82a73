from __future__ import annotations

from datetime import datetime

import strawberry

from graph.context import Info
from graph.relay import Node
from merci import cors, tenants
from merci.ids import to_global


@strawberry.type(description="A partner platform (or Merci's own public site).")
class Tenant(Node):
    id: strawberry.ID
    slug: str
    name: str
    currency: str
    fee_bps: int
    partner_share_bps: int
    created_at: datetime
    pk: strawberry.Private[int]

    @strawberry.field(description="Tenant admins: the origins (`https://app.example`) whose pages may call"
                                  " the API from a browser for this tenant (CORS; docs/cors.md). Null for"
                                  " anyone else.")
    async def cors_origins(self, info: Info) -> list[str] | None:
        p = info.context.principal
        if self.pk != p.tenant_id or not (p.tenant_admin or p.platform_admin):
            return None
        async with info.context.tx() as conn:
            return await cors.tenant_origins(conn)

    @staticmethod
    async def load(info: Info, pk: int) -> Tenant | None:
        async with info.context.tx() as conn:
            row = await tenants.tenant_by_id(conn, tenant_id=pk)
        return None if row is None else Tenant.from_row(row)

    @staticmethod
    def from_row(row: object) -> Tenant:
        r = dict(row)  # type: ignore[call-overload]
        return Tenant(
            id=strawberry.ID(to_global("Tenant", r["id"])), pk=r["id"], slug=r["slug"], name=r["name"],
            currency=r["currency"], fee_bps=r["fee_bps"], partner_share_bps=r["partner_share_bps"],
            created_at=r["created_at"],
        )


@strawberry.type(description="A tenant API key. The secret is shown once, at creation.")
class ApiKey(Node):
    id: strawberry.ID
    name: str
    hint: str = strawberry.field(description="The last four characters of the secret.")
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None
    pk: strawberry.Private[int]

    @staticmethod
    async def load(info: Info, pk: int) -> ApiKey | None:
        ctx = info.context
        if not (ctx.principal.tenant_admin or ctx.principal.platform_admin):
            return None
        async with ctx.tx() as conn:  # RLS: only the caller's tenant's keys exist here
            row = await tenants.api_key(conn, key_id=pk)
        return ApiKey.from_row(row) if row else None

    @staticmethod
    def from_row(row: object) -> ApiKey:
        r = dict(row)  # type: ignore[call-overload]
        return ApiKey(
            id=strawberry.ID(to_global("ApiKey", r["id"])), pk=r["id"], name=r["name"], hint=r["hint"],
            scopes=list(r["scopes"]), created_at=r["created_at"], revoked_at=r["revoked_at"],
        )
