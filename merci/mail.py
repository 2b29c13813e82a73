"""Mail: an outbox written in the transaction that decides a mail, sent afterwards.

A sign-up and its verification mail commit together or not at all; the API then hands
the mail's id to the `mail.send` actor (queue `mail`), and the scheduler sends again
whatever is still unsent a while later (a lost message, a dead worker). Sending is
at-least-once: a worker killed between the SMTP server's "250 OK" and marking the row
sent sends it again on retry, which for these mails (links, notices) is harmless.

Where it goes: SMTP when MERCI_SMTP_HOST is set (stdlib smtplib in a thread: a mail a
second is plenty, and it is the one kept by CPython itself); otherwise, in development
and test, the dev mailbox, which is the outbox itself (/dev/mailbox lists it). Production
and staging without SMTP keep their mail unsent and the worker says why.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import asyncpg
import structlog

from merci.config import Settings
from merci.queue import MAIL

log = structlog.get_logger("merci.mail")

SEND_ACTOR = "mail.send"
SEND_QUEUE = MAIL
RESEND_AFTER_SECONDS = 120  # the scheduler sends again what is unsent this long after it was written
MAX_ATTEMPTS = 20  # past this many failures a mail stays unsent (its error says why)


@dataclass(frozen=True)
class Mail:
    kind: str
    recipient: str
    subject: str
    body: str


async def queue(conn: asyncpg.Connection, *, tenant_id: int, account_id: int | None, mail: Mail) -> int:
    """Write `mail` to the outbox in the caller's transaction; its id, for `mail.send`."""
    # merci_app may not read the outbox (mails carry links that log in), so no RETURNING.
    mail_id: int = await conn.fetchval("select nextval('mail_outbox_id_seq')")
    await conn.execute(
        "insert into mail_outbox (id, tenant_id, account_id, kind, recipient, subject, body)"
        " values ($1, $2, $3, $4, $5, $6, $7)",
        mail_id, tenant_id, account_id, mail.kind, mail.recipient, mail.subject, mail.body)
    return mail_id


class Refused(Exception):
    """The transport cannot send here (no SMTP in production): the mail waits."""


def message(settings: Settings, row: dict[str, Any]) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = settings.mail_from
    msg["To"] = row["recipient"]
    msg["Subject"] = row["subject"]
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=settings.mail_from.rpartition("@")[2].rstrip(">") or None)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to us
    msg.set_content(row["body"])
    return msg


def send_smtp(settings: Settings, msg: EmailMessage) -> None:
    """One mail through MERCI_SMTP_* (blocking: run it in a thread)."""
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if settings.smtp_security == "tls":
        smtp = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout,
                                context=context)
    else:
        smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout)
    with smtp:
        if settings.smtp_security == "starttls":
            smtp.starttls(context=context)
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password)
        smtp.send_message(msg)


async def deliver(settings: Settings, row: dict[str, Any]) -> str:
    """Send one outbox row; returns how ('smtp', 'mailbox'). Raises Refused or the
    transport's error."""
    if settings.smtp_host:
        await asyncio.to_thread(send_smtp, settings, message(settings, row))
        return "smtp"
    if settings.dev_env:
        return "mailbox"  # the outbox is the dev mailbox: marking it sent is the delivery
    raise Refused(f"no SMTP server (MERCI_SMTP_HOST) in {settings.env}: mail waits in the outbox")


async def send(conn: asyncpg.Connection, settings: Settings, *, mail_id: int) -> str | None:
    """Send one mail (as merci_system); idempotent: a sent or unknown mail is left alone.
    The row is locked meanwhile, so two workers given the same id send it once."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "select id, recipient, subject, body, attempts from mail_outbox"
            " where id = $1 and sent_at is null for update skip locked", mail_id)
        if row is None:
            return None
        try:
            how = await deliver(settings, dict(row))
        except Exception as exc:
            await conn.execute("update mail_outbox set attempts = attempts + 1, last_error = left($2, 1000)"
                               " where id = $1", mail_id, f"{type(exc).__name__}: {exc}")
            log.warning("mail not sent", mail_id=mail_id, error=str(exc), attempts=row["attempts"] + 1)
            return "failed"
        await conn.execute("update mail_outbox set sent_at = now(), attempts = attempts + 1, last_error = null"
                           " where id = $1", mail_id)
    log.info("mail sent", mail_id=mail_id, via=how)
    return how


async def unsent(conn: asyncpg.Connection, *, now: datetime) -> list[int]:
    """Mail still unsent a while after it was written, and not given up on (the scheduler)."""
    return [r["id"] for r in await conn.fetch(
        "select id from mail_outbox where sent_at is null and attempts < $3"
        " and created_at < $1::timestamptz - make_interval(secs => $2) order by id limit 500",
        now, RESEND_AFTER_SECONDS, MAX_ATTEMPTS)]


async def mailbox(conn: asyncpg.Connection, *, recipient: str | None, limit: int = 50) -> list[dict[str, Any]]:
    """The dev mailbox: the latest mails (of `recipient`), newest first. The database
    refuses it outside development and test (merci_dev_mailbox)."""
    rows = await conn.fetch("select id, tenant_id, kind, recipient, subject, body, created_at, sent_at"
                            " from merci_dev_mailbox($1, $2)", recipient, limit)
    return [dict(r) for r in rows]
