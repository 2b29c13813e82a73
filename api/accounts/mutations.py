from __future__ import annotations

import logging
from datetime import timedelta

import strawberry

from api.accounts.types import Account
from graph.context import Context, Info
from graph.errors import UserErrorType, attempt, user_errors_only
from graph.pages import choose_lang
from merci import account_data, account_mail, accounts, mail
from merci.errors import UserError
from merci.queue import Queue
from merci.ratelimit import guarded_login

log = logging.getLogger("merci.mail")

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
class VerifyEmailInput:
    token: str = strawberry.field(description="The token of the link mailed to the address.")


@strawberry.input
class EmailInput:
    email: str


@strawberry.input
class ResetPasswordInput:
    token: str = strawberry.field(description="The token of the link `requestPasswordReset` mailed.")
    new_password: str


@strawberry.input
class ChangePasswordInput:
    current_password: str
    new_password: str


@strawberry.input
class DeleteAccountInput:
    password: str
    forfeit_balance: bool = strawberry.field(
        default=False, description="Required when a balance or earnings are left: they are lost with the account.")


@strawberry.type
class AccountActionPayload:
    ok: bool = strawberry.field(description="Done (for what mails an address: answered, the same for any address).")
    user_errors: list[UserErrorType]


def _refused(errors: list[UserErrorType]) -> AccountActionPayload:
    return AccountActionPayload(ok=False, user_errors=errors)


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
    @strawberry.mutation(description="Create an account in the current tenant. It answers alike whether the email "
                                     "has an account or not (account and token null): a link mailed to the address "
                                     "verifies it and logs in (`verifyEmail`); an address that has an account is "
                                     "told instead.")
    async def sign_up(self, info: Info, input: SignUpInput) -> AuthPayload:
        ctx = info.context

        async def work() -> AuthPayload:
            # Counted before anything is checked: a refused sign-up costs a try as well.
            await ctx.limit("signup.ip", ctx.client_ip, what="sign-ups")
            # Hashed whether the email has an account or not, so both take the same time;
            # off the loop, and before the transaction (no connection held meanwhile).
            password_hash = await accounts.hash_new_password(input.password)
            async with ctx.tx() as conn:
                mail_id = await account_mail.sign_up(
                    conn, ctx.settings, tenant_id=ctx.principal.tenant_id, email=input.email,
                    password=input.password, handle=input.handle, display_name=input.display_name or "",
                    password_hash=password_hash or "", lang=choose_lang(ctx.request), may_mail=_may_mail(ctx))
            await _send(ctx, mail_id)
            return AuthPayload(account=None, token=None, user_errors=[])

        return await attempt(work, user_errors_only(AuthPayload))

    @strawberry.mutation(description="Verify an email by the link mailed to it, and log in (the first time; later, "
                                     "account and token are null).")
    async def verify_email(self, info: Info, input: VerifyEmailInput) -> AuthPayload:
        ctx = info.context

        async def work() -> AuthPayload:
            # No limit of its own: a token is signed, nothing to guess (requests are counted).
            async with ctx.tx() as conn:
                claim, verified = await account_mail.verify_email(conn, ctx.settings, token=input.token)
                token = None if not verified else await accounts.issue_token(
                    conn, tenant_id=claim.tenant_id, account_id=claim.account_id,
                    ttl=timedelta(seconds=ctx.settings.token_ttl_seconds))
            if token is None:
                return AuthPayload(account=None, token=None, user_errors=[])
            return await _logged_in(info, token)

        return await attempt(work, user_errors_only(AuthPayload))

    @strawberry.mutation(description="Mail the verification link again to an unverified account's address. Answers "
                                     "the same for any email.")
    async def resend_verification(self, info: Info, input: EmailInput) -> AccountActionPayload:
        return await _mail_to(info.context, input.email, "verify_email")

    @strawberry.mutation(description="Mail a link to choose a new password (valid one hour, once). Answers the same "
                                     "for any email.")
    async def request_password_reset(self, info: Info, input: EmailInput) -> AccountActionPayload:
        return await _mail_to(info.context, input.email, "password_reset")

    @strawberry.mutation(description="A new password by the link `requestPasswordReset` mailed: every session ends "
                                     "(log in again), and the address counts as verified.")
    async def reset_password(self, info: Info, input: ResetPasswordInput) -> AccountActionPayload:
        ctx = info.context

        async def work() -> AccountActionPayload:
            await ctx.limit("reset.ip", ctx.client_ip, what="password resets")
            async with ctx.tx() as conn:
                claim, _ = await account_mail.check_reset(conn, ctx.settings, token=input.token,
                                                          new_password=input.new_password)
            password_hash = await accounts.hash_password(input.new_password)  # no connection held
            async with ctx.tx() as conn:
                claim, _ = await account_mail.check_reset(conn, ctx.settings, token=input.token,
                                                          new_password=input.new_password)  # still unused?
                mail_id = await account_mail.set_password(
                    conn, ctx.settings, tenant_id=claim.tenant_id, account_id=claim.account_id,
                    password_hash=password_hash, by_link=True, lang=choose_lang(ctx.request))
            accounts.principals.forget(account_id=claim.account_id)
            await _send(ctx, mail_id)
            return AccountActionPayload(ok=True, user_errors=[])

        return await attempt(work, _refused)

    @strawberry.mutation(description="Change your password: every other session ends; this one gets a new token.")
    async def change_password(self, info: Info, input: ChangePasswordInput) -> AuthPayload:
        ctx = info.context

        async def work() -> AuthPayload:
            me = ctx.require_account()
            await _check_own_password(ctx, me, input.current_password, "currentPassword")
            async with ctx.tx() as conn:
                row = await accounts.own_account(conn, account_id=me)
                assert row is not None
                await account_mail.check_new_password(input.new_password, row, field="newPassword")
            password_hash = await accounts.hash_password(input.new_password)
            async with ctx.tx() as conn:
                mail_id = await account_mail.set_password(
                    conn, ctx.settings, tenant_id=ctx.principal.tenant_id, account_id=me,
                    password_hash=password_hash, by_link=False, lang=choose_lang(ctx.request))
                token = await accounts.issue_token(conn, tenant_id=ctx.principal.tenant_id, account_id=me,
                                                   ttl=timedelta(seconds=ctx.settings.token_ttl_seconds))
            accounts.principals.forget(account_id=me)
            await _send(ctx, mail_id)
            return await _logged_in(info, token)

        return await attempt(work, user_errors_only(AuthPayload))

    @strawberry.mutation(description="Delete your account (docs/api.md, Accounts): your email, handle and name go, "
                                     "every session ends; money already distributed stays in the ledger.")
    async def delete_account(self, info: Info, input: DeleteAccountInput) -> AccountActionPayload:
        ctx = info.context

        async def work() -> AccountActionPayload:
            me = ctx.require_account()
            await _check_own_password(ctx, me, input.password, "password")
            async with ctx.tx() as conn:
                mail_id = await account_data.delete(conn, tenant_id=ctx.principal.tenant_id, account_id=me,
                                                    currency=ctx.settings.currency, forfeit=input.forfeit_balance,
                                                    lang=choose_lang(ctx.request))
            accounts.principals.forget(account_id=me)
            if ctx.response is not None:
                ctx.response.delete_cookie(SESSION_COOKIE, path="/")
            await _send(ctx, mail_id)
            return AccountActionPayload(ok=True, user_errors=[])

        return await attempt(work, _refused)

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


async def _logged_in(info: Info, token: str) -> AuthPayload:
    """The answer of a mutation that logs in with `token`: cookie, principal, account."""
    ctx = info.context
    async with ctx.tx() as conn:
        principal = await accounts.resolve_session(conn, token=token)
    assert principal is not None and principal.account_id is not None
    ctx.principal = principal
    _set_cookie(info, token, ctx.settings.token_ttl_seconds)
    return AuthPayload(account=await Account.load(info, principal.account_id), token=token, user_errors=[])


async def _mail_to(ctx: Context, email: str, kind: str) -> AccountActionPayload:
    """resendVerification, requestPasswordReset: the same answer for any email."""
    async def work() -> AccountActionPayload:
        await ctx.limit("reset.ip", ctx.client_ip, what="mails")
        async with ctx.tx() as conn:
            mail_id = await account_mail.mail_link(conn, ctx.settings, kind, tenant_id=ctx.principal.tenant_id,
                                                   email=email, lang=choose_lang(ctx.request),
                                                   may_mail=_may_mail(ctx))
        await _send(ctx, mail_id)
        return AccountActionPayload(ok=True, user_errors=[])

    return await attempt(work, _refused)


async def _check_own_password(ctx: Context, account_id: int, password: str, field: str) -> None:
    await ctx.limit("login.ip", ctx.client_ip, what="password checks")  # argon2 each
    if not await accounts.password_matches(ctx.tx, account_id=account_id, password=password):
        raise UserError("INVALID_CREDENTIALS", "wrong password", field)


def _may_mail(ctx: Context) -> account_mail.MayMail:
    async def may(recipient: str) -> bool:
        return ctx.limiter is None or await ctx.limiter.allows("mail.recipient", recipient)

    return may


async def _send(ctx: Context, mail_id: int | None) -> None:
    await send_mail(ctx.queue, mail_id)


async def send_mail(queue: Queue | None, mail_id: int | None) -> None:
    """`mail.send` for a mail just committed (after commit, so that the worker finds it);
    should that fail, the scheduler sends the mail later (merci.mail.unsent)."""
    if mail_id is None or queue is None:
        return
    try:
        await queue.asend(mail.SEND_ACTOR, mail_id, queue_name=mail.SEND_QUEUE)
    except Exception:
        log.warning("mail %s not enqueued; the scheduler will send it", mail_id, exc_info=True)
