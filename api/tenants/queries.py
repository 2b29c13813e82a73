from __future__ import annotations

import strawberry

from api.tenants.types import ApiKey, Tenant
from graph.context import Info
from graph.relay import Connection, empty, paginate, window
from merci import tenants


@strawberry.type
class TenantQueries:
    @strawberry.field(description="The tenant this request acts in.")
    async def tenant(self, info: Info) -> Tenant | None:
        return await Tenant.load(info, info.context.principal.tenant_id)

    @strawberry.field(description="Tenant admins: the tenant's API keys.")
    async def api_keys(
        self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None,
    ) -> Connection[ApiKey]:
        w = window(first, after, last, before)
        ctx = info.context
        if not (ctx.principal.tenant_admin or ctx.principal.platform_admin):
            return empty()
        return await paginate(ctx.tx, tenants.api_keys(), w, ApiKey.from_row, cursor_of=lambda k: k.pk)

    @strawberry.field(description="Platform admins: every tenant, newest first. Empty for anyone else.")
    async def tenants(
        self, info: Info, first: int | None = None, after: str | None = None, last: int | None = None,
        before: str | None = None,
    ) -> Connection[Tenant]:
        w = window(first, after, last, before)
        ctx = info.context
        if not ctx.principal.platform_admin or ctx.principal.api_key_id is not None:
            return empty()
        return await paginate(ctx.tx, tenants.all_tenants(), w, Tenant.from_row, cursor_of=lambda t: t.pk)
