from __future__ import annotations

from collections.abc import Awaitable, Callable

import strawberry

from api.tenants.types import ApiKey, Tenant
from graph.context import Info
from graph.errors import UserErrorType, attempt, user_errors_only
from merci import accounts, cors, tenants
from merci.db import Scope, set_scope
from merci.errors import Checks, UserError
from merci.ids import from_global


@strawberry.input
class TenantAdminInput:
    email: str
    password: str
    handle: str


@strawberry.input
class CreateTenantInput:
    slug: str
    name: str
    fee_bps: int = 1000
    partner_share_bps: int = 0
    admin: TenantAdminInput | None = None


@strawberry.type
class CreateTenantPayload:
    tenant: Tenant | None
    user_errors: list[UserErrorType]


@strawberry.input
class CreateApiKeyInput:
    name: str
    scopes: list[str]


@strawberry.type
class CreateApiKeyPayload:
    api_key: ApiKey | None
    secret: str | None = strawberry.field(description="Shown once; store it now.")
    user_errors: list[UserErrorType]


@strawberry.input
class RevokeApiKeyInput:
    id: strawberry.ID


@strawberry.type
class RevokeApiKeyPayload:
    api_key: ApiKey | None
    user_errors: list[UserErrorType]


@strawberry.input
class CorsOriginInput:
    origin: str = strawberry.field(description="scheme://host[:port]: https, or http on localhost.")


@strawberry.type
class CorsOriginPayload:
    origin: str | None = strawberry.field(description="The origin as browsers send it (lowercase, no default port).")
    tenant: Tenant | None
    user_errors: list[UserErrorType]


@strawberry.type
class TenantMutations:
    @strawberry.mutation(description="Platform admins: create a partner tenant, with its first admin.")
    async def create_tenant(self, info: Info, input: CreateTenantInput) -> CreateTenantPayload:
        ctx = info.context

        async def work() -> CreateTenantPayload:
            if not ctx.principal.platform_admin:
                raise UserError("FORBIDDEN", "only a platform admin may create tenants")
            checks = Checks()  # the tenant's refusals with its admin's
            checks(tenants.check_tenant, slug=input.slug, name=input.name, fee_bps=input.fee_bps,
                   partner_share_bps=input.partner_share_bps)
            if input.admin is not None:
                accounts.check_sign_up(checks, email=input.admin.email, password=input.admin.password,
                                       handle=input.admin.handle, prefix="admin.")
            checks.done()
            if input.admin is not None:
                await ctx.limit("signup.ip", ctx.client_ip, what="sign-ups")
            async with ctx.tx() as conn:
                tenant_id = await tenants.create_tenant(
                    conn, slug=input.slug, name=input.name, fee_bps=input.fee_bps,
                    partner_share_bps=input.partner_share_bps,
                )
                if input.admin is not None:
                    # The admin's rows belong to the new tenant: switch the scope for them,
                    # still as the caller (whom merci_make_tenant_admin checks).
                    await set_scope(conn, Scope(tenant_id, ctx.principal.account_id, platform_admin=True))
                    account_id = await accounts.sign_up(
                        conn, tenant_id=tenant_id, email=input.admin.email,
                        password=input.admin.password, handle=input.admin.handle,
                    )
                    await tenants.make_tenant_admin(conn, account_id=account_id)
            return CreateTenantPayload(tenant=await Tenant.load(info, tenant_id), user_errors=[])

        return await attempt(work, user_errors_only(CreateTenantPayload))

    @strawberry.mutation(description="Tenant admins: create an API key with scopes.")
    async def create_api_key(self, info: Info, input: CreateApiKeyInput) -> CreateApiKeyPayload:
        ctx = info.context

        async def work() -> CreateApiKeyPayload:
            ctx.require_tenant_admin()
            async with ctx.tx() as conn:
                key_id, secret = await tenants.create_api_key(
                    conn, tenant_id=ctx.principal.tenant_id, name=input.name, scopes=input.scopes,
                    created_by=ctx.principal.account_id,
                )
            return CreateApiKeyPayload(api_key=await ApiKey.load(info, key_id), secret=secret,
                                       user_errors=[])

        return await attempt(work, user_errors_only(CreateApiKeyPayload))

    @strawberry.mutation(description="Tenant admins: revoke an API key at once.")
    async def revoke_api_key(self, info: Info, input: RevokeApiKeyInput) -> RevokeApiKeyPayload:
        ctx = info.context

        async def work() -> RevokeApiKeyPayload:
            ctx.require_tenant_admin()
            _, pk = from_global(input.id, expect="ApiKey")
            async with ctx.tx() as conn:
                if not await tenants.revoke_api_key(conn, key_id=pk):
                    raise UserError("NOT_FOUND", "no such active API key", "id")
            accounts.principals.forget(api_key_id=pk)
            return RevokeApiKeyPayload(api_key=await ApiKey.load(info, pk), user_errors=[])

        return await attempt(work, user_errors_only(RevokeApiKeyPayload))

    @strawberry.mutation(description="Tenant admins: let the pages of an origin (your app's) call the API from a"
                                     " browser, for your tenant (CORS). Listing it again changes nothing.")
    async def add_cors_origin(self, info: Info, input: CorsOriginInput) -> CorsOriginPayload:
        return await _change_origin(info, cors.add_origin, input.origin)

    @strawberry.mutation(description="Tenant admins: take an origin off your tenant's CORS list.")
    async def remove_cors_origin(self, info: Info, input: CorsOriginInput) -> CorsOriginPayload:
        return await _change_origin(info, cors.remove_origin, input.origin)


async def _change_origin(info: Info, change: Callable[..., Awaitable[str]], origin: str) -> CorsOriginPayload:
    ctx = info.context

    async def work() -> CorsOriginPayload:
        ctx.require_tenant_admin()
        async with ctx.tx() as conn:
            stored = await change(conn, origin=origin)
        ctx.request.app.state.cors.forget()  # this process answers with the new list at once
        return CorsOriginPayload(origin=stored, tenant=await Tenant.load(info, ctx.principal.tenant_id),
                                 user_errors=[])

    return await attempt(work, user_errors_only(CorsOriginPayload))
