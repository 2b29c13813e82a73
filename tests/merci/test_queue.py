"""merci.queue: the queues by name, in one place, and the broker's own row whichever way a
message is sent."""

from __future__ import annotations

import ast
import asyncio
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import asyncpg
import dramatiq
import pytest

from merci.clicks import INGEST_ACTOR
from merci.config import Settings
from merci.db import migrate
from merci.queue import CLICKS, QUEUES, Queue, make_broker
from tests.conftest import ROOT, create_database, drop_database


def queue_literals(source: str) -> list[str]:
    """Queue names written as strings: `queue_name="money"`, `X_QUEUE = "money"`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.keyword) and node.arg == "queue_name":
            values = [node.value]
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id.endswith("QUEUE")
                                                  for t in node.targets):
            values = [node.value]
        else:
            continue
        found += [v.value for v in values if isinstance(v, ast.Constant) and v.value in QUEUES]
    return found


def test_queue_names_are_the_constants() -> None:
    sources = {str(p.relative_to(ROOT)): p.read_text() for part in ("merci", "api", "directory", "graph", "workers",
                                                                    "runtime") for p in (ROOT / part).rglob("*.py")}
    del sources["merci/queue.py"]
    assert {path: queue_literals(s) for path, s in sources.items() if queue_literals(s)} == {}
    assert queue_literals('send("a", queue_name="money")\nPAYOUT_QUEUE = "money"\n') == ["money", "money"]


# sha256 of dramatiq-postgres's enqueue statements as merci.queue.AsyncPostgresEnqueue
# takes them and migration 0014's merci_enqueue mirrors them (dramatiq-postgres 1.4.0).
# When a release changes them: read the new statement, bring both up to it (a new
# migration for the function), then record the new digests here.
ENQUEUE_STATEMENTS = {
    "ENQUEUE": "a062c65fb6ffd68bb056aba09997c2cabdef3025a40be3387b7a80585ddf1022",
    "ENQUEUE_QUIET": "b590b2eaaf8cc4c7611499ee3d15183ce37dda688fd555ac3468c13671444166",
}


def test_the_brokers_enqueue_is_the_one_merci_copies() -> None:
    from dramatiq_postgres.broker import QUERIES

    found = {name: hashlib.sha256(getattr(QUERIES, name).encode()).hexdigest() for name in ENQUEUE_STATEMENTS}
    assert found == ENQUEUE_STATEMENTS, "dramatiq-postgres's enqueue changed: see ENQUEUE_STATEMENTS"


@pytest.fixture
def fresh(server_url: str) -> Iterator[Settings]:
    """A database of its own: no worker of another test consumes what this one sends."""
    dsn = create_database(server_url, "merci_queue")
    try:
        asyncio.run(migrate(dsn))
        yield Settings(database_url=dsn).derived()
    finally:
        drop_database(server_url, dsn)


def test_every_way_of_sending_writes_the_brokers_own_row(fresh: Settings) -> None:
    """The broker's enqueue (the library's public path) against merci's three: asyncpg with
    the library's statement (workers, the scheduler), and merci_enqueue from asyncpg and
    from psycopg (the API's role). Same row but for the message's id and time, every
    column compared, and the same notification to the consumers."""
    reference = make_broker("", fresh.system_database_url)
    system = Queue(make_broker("", fresh.system_database_url), database_url=fresh.system_database_url)
    api = Queue(make_broker("", fresh.app_database_url), database_url=fresh.app_database_url)

    async def send_all() -> tuple[dict[str, str], int]:
        heard: list[str] = []
        listener = await asyncpg.connect(fresh.database_url)
        await listener.add_listener(f"dramatiq.{CLICKS}.enqueue", lambda *args: heard.append(args[2]))
        try:
            sent = {"the broker": reference.enqueue(dramatiq.Message(
                queue_name=CLICKS, actor_name=INGEST_ACTOR, args=([1],), kwargs={}, options={})).message_id}
            sent["asyncpg, the broker's statement"] = await system.asend(INGEST_ACTOR, [1], queue_name=CLICKS)
            assert system.direct is not None and not system.direct.checked
            sent["merci_enqueue from asyncpg"] = await api.asend(INGEST_ACTOR, [1], queue_name=CLICKS)
            assert api.direct is not None and api.direct.checked
            sent["merci_enqueue from psycopg"] = await asyncio.to_thread(api.send, INGEST_ACTOR, [1],
                                                                         queue_name=CLICKS)
            assert api.checked
            await asyncio.sleep(0.5)
            return sent, len(heard)
        finally:
            await listener.close()
            await system.aclose()
            await api.aclose()

    try:
        sent, notifications = asyncio.run(send_all())
    finally:
        for queue in (system, api):
            queue.close()
        reference.close()
    assert notifications == len(sent)
    rows = asyncio.run(_rows(fresh.database_url, list(sent.values())))
    written = {how: rows[message_id] for how, message_id in sent.items()}
    assert written["the broker"]["state"] == "queued" and written["the broker"]["message"]["args"] == [[1]]
    assert {how: row for how, row in written.items() if row != written["the broker"]} == {}


async def _rows(dsn: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each message's row, every column, less what differs by nature: its id, its place in
    the queue, and its times (checked: due at once)."""
    conn = await asyncpg.connect(dsn)
    try:
        found = await conn.fetch(
            "select q.message_id::text as id, q.available_at <= now() and q.mtime <= now() as due,"
            " to_jsonb(q) - 'message_id' - 'position' - 'available_at' - 'mtime' as row"
            " from dramatiq.queue q where q.message_id = any($1::uuid[])", ids)
    finally:
        await conn.close()
    out = {}
    for r in found:
        row = json.loads(r["row"])
        row["message"].pop("message_id")
        row["message"].pop("message_timestamp")
        out[r["id"]] = {**row, "due": r["due"]}
    return out
