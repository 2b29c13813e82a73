"""The outbox and its sending (merci.mail): SMTP to a real socket server speaking the
protocol, the dev mailbox, production without SMTP, and the scheduler's resend."""

from __future__ import annotations

import asyncio
import email
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from merci import config, mail
from merci.db import Scope, scoped
from tests.factories import merci_tenant


class SmtpServer:
    """Enough of RFC 5321 for smtplib: EHLO, MAIL, RCPT, DATA, QUIT; `fail` answers 451."""

    def __init__(self, fail: bool = False) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.fail = fail

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def say(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        say("220 test ESMTP")
        sender, rcpts = "", []
        while line := (await reader.readline()).decode().strip():
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                say("250-test")
                say("250 8BITMIME")
            elif verb == "MAIL":
                sender = line.split(":", 1)[1].strip()
                say("451 try later" if self.fail else "250 ok")
            elif verb == "RCPT":
                rcpts.append(line.split(":", 1)[1].strip())
                say("250 ok")
            elif verb == "DATA":
                say("354 go on")
                data = b""
                while (chunk := await reader.readline()) != b".\r\n":
                    data += chunk
                self.messages.append((sender, rcpts, data))
                say("250 queued")
            elif verb == "QUIT":
                say("221 bye")
                break
            else:
                say("250 ok")
            await writer.drain()
        await writer.drain()
        writer.close()


async def write(pool: asyncpg.Pool, tenant_id: int, recipient: str) -> int:
    async with scoped(pool, Scope(tenant_id)) as conn:
        return await mail.queue(conn, tenant_id=tenant_id, account_id=None,
                                mail=mail.Mail("verify_email", recipient, "Bonjour", "Suivez le lien : https://x/y\n"))


async def row(pool: asyncpg.Pool, mail_id: int) -> asyncpg.Record:
    async with pool.acquire() as conn:
        return await conn.fetchrow("select sent_at, attempts, last_error from mail_outbox where id = $1", mail_id)


async def test_smtp_sends_once_and_retries_a_failure(app_pool: asyncpg.Pool, system_pool: asyncpg.Pool,
                                                     settings: config.Settings) -> None:
    async with system_pool.acquire() as conn:
        tenant = await merci_tenant(conn)
    for fail in (True, False):
        server = SmtpServer(fail=fail)
        listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        port = listening.sockets[0].getsockname()[1]
        smtp = replace(settings, env="production", smtp_host="127.0.0.1", smtp_port=port, smtp_security="none",
                       smtp_timeout=5, mail_from="Merci <no-reply@merci.example>")
        mail_id = await write(app_pool, tenant, "ada@example.org")
        async with system_pool.acquire() as conn:
            outcome = await mail.send(conn, smtp, mail_id=mail_id)
            again = await mail.send(conn, smtp, mail_id=mail_id)
        listening.close()
        if fail:
            assert outcome == again == "failed" and server.messages == []
            stored = await row(system_pool, mail_id)
            assert stored["sent_at"] is None and stored["attempts"] == 2 and "451" in stored["last_error"]
            continue
        assert outcome == "smtp" and again is None  # sent once: the second call finds it sent
        [(sender, rcpts, data)] = server.messages
        assert sender == "<no-reply@merci.example>" and rcpts == ["<ada@example.org>"]
        message = email.message_from_bytes(data)
        assert message["Subject"] == "Bonjour" and message["Auto-Submitted"] == "auto-generated"
        assert "Suivez le lien" in message.get_payload(decode=True).decode()
        assert (await row(system_pool, mail_id))["sent_at"] is not None


async def test_dev_mailbox_and_production_without_smtp(app_pool: asyncpg.Pool, system_pool: asyncpg.Pool,
                                                       settings: config.Settings) -> None:
    async with system_pool.acquire() as conn:
        tenant = await merci_tenant(conn)
    mail_id = await write(app_pool, tenant, "bob@example.org")
    async with system_pool.acquire() as conn:
        assert await mail.send(conn, replace(settings, env="production"), mail_id=mail_id) == "failed"
        assert "MERCI_SMTP_HOST" in (await row(system_pool, mail_id))["last_error"]
        assert await mail.send(conn, replace(settings, env="test"), mail_id=mail_id) == "mailbox"
    async with app_pool.acquire() as conn:  # merci_app reads no mail but through the dev mailbox
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("select body from mail_outbox")
        [found] = [m for m in await mail.mailbox(conn, recipient="BOB@example.org") if m["id"] == mail_id]
    assert found["subject"] == "Bonjour" and found["sent_at"] is not None


async def test_the_scheduler_sends_what_stayed_unsent(app_pool: asyncpg.Pool, system_pool: asyncpg.Pool) -> None:
    async with system_pool.acquire() as conn:
        tenant = await merci_tenant(conn)
    mail_id = await write(app_pool, tenant, "cy@example.org")
    now = datetime.now(UTC)
    async with system_pool.acquire() as conn:
        assert mail_id not in await mail.unsent(conn, now=now)  # just written: its message is on its way
        assert mail_id in await mail.unsent(conn, now=now + timedelta(seconds=mail.RESEND_AFTER_SECONDS + 1))
        await conn.execute("update mail_outbox set attempts = $2 where id = $1", mail_id, mail.MAX_ATTEMPTS)
        assert mail_id not in await mail.unsent(conn, now=now + timedelta(hours=1))  # given up: last_error says why


def test_the_workers_run_the_mail_actor(database_url: str) -> None:
    """`dramatiq workers` (merci worker) loads the actor the API sends: a queue nobody consumes
    would keep every mail in the outbox."""
    import subprocess
    import sys

    from tests.conftest import ROOT, service_env

    probe = subprocess.run([sys.executable, "-c", "import dramatiq, workers; "
                            f"print(dramatiq.get_broker().get_actor({mail.SEND_ACTOR!r}).queue_name)"],
                           env=service_env(database_url), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.split()[-1] == mail.SEND_QUEUE
