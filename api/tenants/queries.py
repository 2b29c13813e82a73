from __future__ import annotations

import strawberry

from api.tenants.types import ApiKey, Tenant
from graph.context import Info
from graph.relay import Connection, check_first, connection, decode_int_cursor


@strawberry.type
class TenantQueries:
    @strawberry.field(description="The tenant this request acts in.")
    async def tenant(self, info: Info) -> Tenant | None:
        return await Tenant.load(info, info.context.principal.tenant_id)

    @strawberry.field(description="Tenant admins: the tenant's API keys.")
    async def api_keys(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[ApiKey]:
        n = check_first(first)
        cursor = decode_int_cursor(after) or 0
        ctx = info.context
        if not (ctx.principal.tenant_admin or ctx.principal.platform_admin):
            return connection([], first=n, cursor_of=lambda k: k.pk)
        async with ctx.tx() as conn:
            rows = await conn.fetch(
                "select id, name, hint, scopes, created_at, revoked_at from api_keys"
                " where id > $1 order by id limit $2",
                cursor, n + 1,
            )
        return connection([ApiKey.from_row(r) for r in rows], first=n, cursor_of=lambda k: k.pk)
