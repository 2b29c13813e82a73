from __future__ import annotations

from datetime import timedelta

import strawberry

from api.accounts.types import Account
from graph.context import Info
from graph.errors import UserErrorType, attempt, user_errors_only
from merci import accounts
from merci.ratelimit import guarded_login

SESSION_COOKIE = accounts.SESSION_COOKIE


@strawberry.input
class SignUpInput:
    email: str
    password: str
    handle: str
    display_name: str | None = None


@strawberry.input
class LogInInput:
    email: str
    password: str


@strawberry.type
class AuthPayload:
    account: Account | None
    token: str | None = strawberry.field(description="Bearer token; also set as an HttpOnly cookie.")
    user_errors: list[UserErrorType]


@strawberry.input
class LogOutInput:
    all_sessions: bool = False


@strawberry.type
class LogOutPayload:
    ok: bool
    user_errors: list[UserErrorType]


def _set_cookie(info: Info, token: str, ttl: int) -> None:
    response = info.context.response
    if response is not None:
        response.set_cookie(
            SESSION_COOKIE, token, max_age=ttl, httponly=True, samesite="lax",
            secure=info.context.settings.public_url.startswith("https://"), path="/",
        )


@strawberry.type
class AccountMutations:
    @strawberry.mutation(description="Create an account in the current tenant and log it in.")
    async def sign_up(self, info: Info, input: SignUpInput) -> AuthPayload:
        ctx = info.context
        ttl = ctx.settings.token_ttl_seconds

        async def work() -> AuthPayload:
            # Counted before anything is checked: a refused sign-up costs a try as well.
            await ctx.limit("signup.ip", ctx.client_ip, what="sign-ups")
            password_hash = await accounts.hash_new_password(input.password)  # off the loop, no connection held
            async with ctx.tx() as conn:
                account_id = await accounts.sign_up(
                    conn, tenant_id=ctx.principal.tenant_id, email=input.email,
                    password=input.password, handle=input.handle,
                    display_name=input.display_name or "", password_hash=password_hash,
                )
                token = await accounts.issue_token(
                    conn, tenant_id=ctx.principal.tenant_id, account_id=account_id,
                    ttl=timedelta(seconds=ttl),
                )
            ctx.principal = accounts.Principal(tenant_id=ctx.principal.tenant_id, account_id=account_id)
            _set_cookie(info, token, ttl)
            return AuthPayload(account=await Account.load(info, account_id), token=token, user_errors=[])

        return await attempt(work, user_errors_only(AuthPayload))

    @strawberry.mutation(description="Exchange an email and password for a bearer token.")
    async def log_in(self, info: Info, input: LogInInput) -> AuthPayload:
        ctx = info.context
        ttl = ctx.settings.token_ttl_seconds

        async def work() -> AuthPayload:
            account_id, token = await guarded_login(
                ctx.limiter, ctx.tx, tenant_id=ctx.principal.tenant_id, email=input.email, password=input.password,
                ttl=timedelta(seconds=ttl), ip=ctx.client_ip)
            async with ctx.tx() as conn:
                principal = await accounts.resolve_session(conn, token=token)
            assert principal is not None
            ctx.principal = principal
            _set_cookie(info, token, ttl)
            return AuthPayload(account=await Account.load(info, account_id), token=token, user_errors=[])

        return await attempt(work, user_errors_only(AuthPayload))

    @strawberry.mutation(description="Revoke the current session token.")
    async def log_out(self, info: Info, input: LogOutInput | None = None) -> LogOutPayload:
        ctx = info.context
        token = getattr(ctx.request.state, "session_token", None)
        if token is None or ctx.principal.account_id is None:
            return LogOutPayload(ok=False, user_errors=[UserErrorType(
                field=None, message="not logged in", code="UNAUTHENTICATED")])
        async with ctx.tx() as conn:
            if input is not None and input.all_sessions:
                await accounts.revoke_all_tokens(conn, account_id=ctx.principal.account_id)
            else:
                await accounts.revoke_token(conn, token=token)
        accounts.principals.forget(token=token, account_id=ctx.principal.account_id if input and input.all_sessions
                                   else None)
        if ctx.response is not None:
            ctx.response.delete_cookie(SESSION_COOKIE, path="/")
        return LogOutPayload(ok=True, user_errors=[])
