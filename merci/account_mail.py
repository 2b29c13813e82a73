"""What Merci mails an account, and the signed links in those mails.

Links carry a token signed with MERCI_SECRET_KEY (itsdangerous, with a timestamp and a
purpose of their own), so nothing is stored to check them:
- verifying an email: the account, its tenant and the address it was sent to, for
  VERIFY_MAX_AGE; it no longer holds once the address changed (or the account is gone);
- resetting a password: the account, its tenant and a digest of its password hash as it
  was, for RESET_MAX_AGE; once the password changes the digest differs, so a reset link
  is good once, and a new password makes every older link void.

No answer tells whether an email has an account: a sign-up with a taken email, a reset
or a resend for an unknown one answer as for any other, and the mail (or none) goes to
the address's owner. Each recipient gets at most a few of these mails an hour
(`mail.recipient`), whoever asks: asking more answers the same and sends nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import asyncpg
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from merci import accounts, mail
from merci.config import Settings
from merci.db import Scope, set_scope
from merci.errors import Checks, UserError
from merci.i18n import N_, translations

VERIFY_SALT = "merci.verify-email"
VERIFY_MAX_AGE = 3 * 24 * 3600
RESET_SALT = "merci.reset-password"
RESET_MAX_AGE = 3600
MAX_TOKEN = 1000
VERIFY_PATH = "/account/verify"
RESET_PATH = "/account/reset"

# Whether a mail to `recipient` may go now (a limiter's silent cap), or not.
MayMail = Callable[[str], Awaitable[bool]]

SUBJECTS = {
    "verify_email": N_("Confirm your email address for Merci"),
    "sign_up_attempt": N_("Someone tried to sign up to Merci with your address"),
    "password_reset": N_("Reset your Merci password"),
    "password_changed": N_("Your Merci password was changed"),
    "account_deleted": N_("Your Merci account was deleted"),
}
BODIES = {
    "verify_email": N_(
        "Hello %(name)s,\n\nConfirm your email address to top up, click, subscribe and receive payouts on "
        "Merci:\n\n%(link)s\n\nThe link holds for three days. If you did not sign up, ignore this mail: "
        "nothing happens without it.\n"),
    "sign_up_attempt": N_(
        "Hello %(name)s,\n\nSomeone, perhaps you, tried to create a Merci account with this email address, "
        "which has one already. If it was you, log in instead, or choose a new password here:\n\n%(link)s\n\n"
        "If it was not you, ignore this mail: your account is unchanged.\n"),
    "password_reset": N_(
        "Hello %(name)s,\n\nChoose a new Merci password with this link, which holds for one hour:\n\n%(link)s\n\n"
        "If you did not ask for it, ignore this mail: your password is unchanged.\n"),
    "password_changed": N_(
        "Hello %(name)s,\n\nYour Merci password was changed, and every session was logged out. If it was not "
        "you, choose a new password at once:\n\n%(link)s\n"),
    "account_deleted": N_(
        "Hello %(name)s,\n\nYour Merci account was deleted, as you asked. Your email address, handle and name "
        "are gone from it; the money it already sent stays with the creators who received it.\n"),
}


def compose(kind: str, *, lang: str, recipient: str, name: str, link: str = "") -> mail.Mail:
    t = translations(lang)
    return mail.Mail(kind, recipient, t.gettext(SUBJECTS[kind]), t.gettext(BODIES[kind]) % {"name": name,
                                                                                            "link": link})


def _serializer(settings: Settings, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key, salt=salt)


def _digest(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:32]


def link(settings: Settings, path: str, token: str, lang: str) -> str:
    return f"{settings.public_url.rstrip('/')}{path}?{urlencode({'token': token, 'lang': lang})}"


def verify_token(settings: Settings, *, tenant_id: int, account_id: int, email: str) -> str:
    return str(_serializer(settings, VERIFY_SALT).dumps({"t": tenant_id, "a": account_id, "e": email}))


def reset_token(settings: Settings, *, tenant_id: int, account_id: int, password_hash: str) -> str:
    return str(_serializer(settings, RESET_SALT).dumps({"t": tenant_id, "a": account_id,
                                                       "p": _digest(password_hash)}))


@dataclass(frozen=True)
class Claim:
    """What a valid link's token says."""

    tenant_id: int
    account_id: int
    value: str  # the email (verification) or the password digest (reset)

    @property
    def scope(self) -> Scope:
        return Scope(self.tenant_id, self.account_id)


def read_token(settings: Settings, token: str, *, salt: str, max_age: int) -> Claim:
    """The token's claim; INVALID_TOKEN or TOKEN_EXPIRED (field `token`) otherwise."""
    if not token or len(token) > MAX_TOKEN:
        raise UserError("INVALID_TOKEN", "this link is not valid: ask for a new one", "token")
    try:
        data = _serializer(settings, salt).loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise UserError("TOKEN_EXPIRED", "this link has expired: ask for a new one", "token") from exc
    except BadSignature as exc:
        raise UserError("INVALID_TOKEN", "this link is not valid: ask for a new one", "token") from exc
    try:
        return Claim(int(data["t"]), int(data["a"]), str(data["e" if salt == VERIFY_SALT else "p"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError("INVALID_TOKEN", "this link is not valid: ask for a new one", "token") from exc


async def _account(conn: asyncpg.Connection, account_id: int) -> dict[str, object] | None:
    row = await conn.fetchrow(
        "select a.handle, a.display_name, p.email, p.password_hash, p.email_verified_at, p.deleted_at"
        "  from accounts a join account_private p on p.account_id = a.id where a.id = $1", account_id)
    return None if row is None or row["deleted_at"] is not None else dict(row)


async def _mail_verification(conn: asyncpg.Connection, settings: Settings, *, tenant_id: int, account_id: int,
                             email: str, name: str, lang: str) -> int:
    token = verify_token(settings, tenant_id=tenant_id, account_id=account_id, email=email)
    return await mail.queue(conn, tenant_id=tenant_id, account_id=account_id, mail=compose(
        "verify_email", lang=lang, recipient=email, name=name, link=link(settings, VERIFY_PATH, token, lang)))


async def _mail_reset(conn: asyncpg.Connection, settings: Settings, kind: str, *, tenant_id: int, account_id: int,
                      row: dict[str, object], lang: str) -> int:
    token = reset_token(settings, tenant_id=tenant_id, account_id=account_id, password_hash=str(row["password_hash"]))
    email = str(row["email"])
    return await mail.queue(conn, tenant_id=tenant_id, account_id=account_id, mail=compose(
        kind, lang=lang, recipient=email, name=str(row["display_name"] or row["handle"]),
        link=link(settings, RESET_PATH, token, lang)))


async def sign_up(conn: asyncpg.Connection, settings: Settings, *, tenant_id: int, email: str, password: str,
                  handle: str, display_name: str, password_hash: str, lang: str,
                  may_mail: MayMail) -> int | None:
    """signUp: a new, unverified account and its verification mail; or, when the email
    has an account already, a mail telling its owner, and no account. Either way the
    caller answers the same. Returns the mail to send (None: over the recipient's cap)."""
    email, handle, existing = await accounts.check_new_account(
        conn, tenant_id=tenant_id, email=email, password=password, handle=handle, display_name=display_name)
    if existing is None:
        try:
            account_id = await accounts.create_account(conn, tenant_id=tenant_id, email=email, handle=handle,
                                                       display_name=display_name, password_hash=password_hash)
        except UserError as err:
            if err.code != "EMAIL_TAKEN":
                raise
            existing = await accounts.id_by_email(conn, tenant_id=tenant_id, email=email)  # a sign-up raced us
            if existing is None:
                raise
        else:
            if not await may_mail(email):
                return None
            return await _mail_verification(conn, settings, tenant_id=tenant_id, account_id=account_id, email=email,
                                            name=display_name.strip() or handle, lang=lang)
    row = await _account(conn, existing)
    if row is None or not await may_mail(email):
        return None
    return await _mail_reset(conn, settings, "sign_up_attempt", tenant_id=tenant_id, account_id=existing, row=row,
                             lang=lang)


async def mail_link(conn: asyncpg.Connection, settings: Settings, kind: str, *, tenant_id: int, email: str,
                    lang: str, may_mail: MayMail) -> int | None:
    """resendVerification (`verify_email`: to an unverified account) and
    requestPasswordReset (`password_reset`): the link to the account of that email; for
    any other email nothing, and the caller answers the same."""
    try:
        email = accounts.normalize_email(email)
    except UserError:
        return None
    account_id = await accounts.id_by_email(conn, tenant_id=tenant_id, email=email)
    row = None if account_id is None else await _account(conn, account_id)
    if account_id is None or row is None or (kind == "verify_email" and row["email_verified_at"] is not None):
        return None
    if not await may_mail(email):
        return None
    if kind == "verify_email":
        return await _mail_verification(conn, settings, tenant_id=tenant_id, account_id=account_id, email=email,
                                        name=str(row["display_name"] or row["handle"]), lang=lang)
    return await _mail_reset(conn, settings, "password_reset", tenant_id=tenant_id, account_id=account_id, row=row,
                             lang=lang)


async def verify_email(conn: asyncpg.Connection, settings: Settings, *, token: str) -> tuple[Claim, bool]:
    """verifyEmail: the link's account, and whether this verified it (False: it was
    already). The transaction runs as that account from here on (the link proves it)."""
    claim = read_token(settings, token, salt=VERIFY_SALT, max_age=VERIFY_MAX_AGE)
    await set_scope(conn, claim.scope)
    row = await _account(conn, claim.account_id)
    if row is None or row["email"] != claim.value:
        raise UserError("INVALID_TOKEN", "this link is not valid: ask for a new one", "token")
    if row["email_verified_at"] is not None:
        return claim, False
    if not await conn.fetchval("select merci_verify_email($1)", claim.value):
        raise UserError("INVALID_TOKEN", "this link is not valid: ask for a new one", "token")
    return claim, True


async def check_reset(conn: asyncpg.Connection, settings: Settings, *, token: str,
                      new_password: str) -> tuple[Claim, dict[str, object]]:
    """resetPassword's checks, before the new password is hashed: the link (good once)
    and the password's strength; the transaction runs as the link's account."""
    claim = read_token(settings, token, salt=RESET_SALT, max_age=RESET_MAX_AGE)
    await set_scope(conn, claim.scope)
    row = await _account(conn, claim.account_id)
    if row is None or _digest(str(row["password_hash"])) != claim.value:
        raise UserError("INVALID_TOKEN", "this link was used or replaced already: ask for a new one", "token")
    await check_new_password(new_password, row, field="newPassword")
    return claim, row


async def check_new_password(password: str, row: dict[str, object], *, field: str) -> None:
    checks = Checks()
    try:
        accounts.check_password(password)
    except UserError as err:
        checks.refuse(UserError(err.code, err.message, field))
    await accounts.check_strength(checks, password=password, email=str(row["email"]), handle=str(row["handle"]),
                                  display_name=str(row["display_name"]))
    for refusal in checks.errors:
        refusal.field = field
    checks.done()


async def set_password(conn: asyncpg.Connection, settings: Settings, *, tenant_id: int, account_id: int,
                       password_hash: str, by_link: bool, lang: str) -> int:
    """The new password (the transaction's account's): every session ends, and the
    address is told (a mail with a reset link, should it not have been its owner).
    A reset by link proves the address too. Returns the notice's mail id."""
    if not await conn.fetchval("select merci_set_password($1, $2)", password_hash, by_link):
        raise UserError("INVALID_TOKEN", "this account cannot change its password", None)
    row = await _account(conn, account_id)
    assert row is not None
    return await _mail_reset(conn, settings, "password_changed", tenant_id=tenant_id, account_id=account_id, row=row,
                             lang=lang)
