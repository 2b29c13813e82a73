"""Faults with real processes: a worker SIGKILLed during ingestion and during the
close, a broker restarted with accepted clicks still queued. Nothing is lost and
the ledger equals an uninterrupted run's."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg
import dramatiq
import httpx
import pytest

from merci.clicks import sign_batch
from merci.config import load, with_database
from merci.db import migrate
from merci.queue import Queue, make_broker
from runtime.synthetic import seed_month
from tests.conftest import (
    ROOT,
    GraphQLClient,
    create_database,
    drop_database,
    ledger_snapshot,
    service_env,
    sign_up,
    start_api,
    start_worker,
    system_fetch,
    system_scalar,
    wait_for,
)
from tests.processes import PrivatePostgres, PrivateRabbitMQ, PrivateRedis, audit, merci, scrape, value


def wait_until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    wait_for(predicate, timeout, what, interval=0.2)


FAST = {"MERCI_BROKER_HEARTBEAT_TTL": "3"}  # a dead worker's messages return to the queue in ~3 s
PERIOD = date(2025, 1, 1)


@pytest.fixture
def fresh_db(server_url: str) -> Iterator[str]:
    dsns: list[str] = []

    def make() -> str:
        dsn = create_database(server_url, "merci_fault")
        asyncio.run(migrate(dsn))
        dsns.append(dsn)
        return dsn

    yield make  # type: ignore[misc]
    for dsn in dsns:
        drop_database(server_url, dsn)


async def seed(dsn: str, **kw: int) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return await seed_month(conn, period=PERIOD, **kw)
    finally:
        await conn.close()


BROKERS = ["postgres", "redis", "rabbitmq"]


@pytest.fixture(params=BROKERS)
def own_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """BROKER_URL of a broker of the test's own: "" (the PostgreSQL broker, in the test's
    database), or a Redis or a RabbitMQ node started for the test and stopped by PID."""
    folder = tmp_path / request.param
    folder.mkdir()
    if request.param == "postgres":
        yield ""
    elif request.param == "redis":
        redis_server = PrivateRedis(folder)
        try:
            yield redis_server.url
        finally:
            redis_server.kill()
    else:
        rabbit = PrivateRabbitMQ(folder)
        try:
            yield rabbit.url
        finally:
            rabbit.kill()


def queued_clicks(broker_url: str, dsn: str) -> int:
    """Click messages the broker still holds, delivered or not (0: all handled)."""
    if not broker_url:
        return int(system_scalar(dsn, "select count(*) from dramatiq.queue where state <> 'rejected'"
                                      " and queue_name = 'clicks'"))
    if broker_url.startswith("redis"):
        import redis

        client = redis.Redis.from_url(broker_url)
        try:  # (Dramatiq's keys: the queue, its messages by id, and each worker's unacknowledged ones)
            return int(client.hlen("dramatiq:clicks.msgs"))
        finally:
            client.close()
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        declared = connection.channel().queue_declare("clicks", durable=True, passive=True)
        return int(declared.method.message_count)  # (ready ones: unacknowledged ones return at the kill)
    finally:
        connection.close()


def test_worker_killed_mid_batch_loses_and_doubles_nothing(fresh_db, own_broker: str,  # type: ignore[no-untyped-def]
                                                           tmp_path: Path) -> None:
    """A worker SIGKILLed while it ingests, with each broker: the messages it had taken come
    back (PostgreSQL and Redis after the heartbeat TTL, RabbitMQ when its connection drops),
    and every click is stored exactly once, as signed batches the API would have sent."""
    dsn = fresh_db()
    env = {**FAST, "BROKER_URL": own_broker}
    info = asyncio.run(seed(dsn, supporters=120, things=211, clicks_per_supporter=0))
    queue = Queue(make_broker(own_broker, dsn))
    expected = set()
    batches = []
    for s in range(120):
        batch = []
        for k in range(100):
            thing = info["first_thing"] + (s * 7 + k) % 211
            expected.add((info["first_supporter"] + s, thing))
            batch.append([info["first_supporter"] + s, 1, thing, None, f"k{k}", "2025-01-15T12:00:00+00:00", "click"])
        batches.append(batch)
    secret = load(database_url=dsn).secret_key  # what the workers read from the environment
    for batch in batches + batches[:30]:  # the first 30 batches are delivered twice
        queue.send("clicks.ingest", batch, sign_batch(batch, secret), queue_name="clicks")
    queue.close()

    worker = start_worker(dsn, tmp_path / "w1.log", threads=2, **env)
    wait_until(lambda: system_scalar(dsn, "select count(*) from clicks") > 2000, 60, "ingestion to start")
    worker.kill_group()
    killed = time.monotonic()
    stored = system_scalar(dsn, "select count(*) from clicks")
    assert 0 < stored < len(expected), "the kill must land mid-ingestion"

    worker = start_worker(dsn, tmp_path / "w2.log", threads=2, **env)
    try:
        wait_until(lambda: system_scalar(dsn, "select count(*) from clicks") == len(expected), 90,
                   "all clicks ingested")
        took = time.monotonic() - killed
        wait_until(lambda: queued_clicks(own_broker, dsn) == 0, 30, "the broker to hold no click message")
    finally:
        worker.stop()
    rows = system_fetch(dsn, "select supporter_id, thing_id from clicks")
    assert {(r[0], r[1]) for r in rows} == expected
    assert system_scalar(dsn, "select sum(clicks) from thing_stats") == len(expected)
    assert system_scalar(dsn, "select count(*) from click_rejections") == 0  # redelivery is not a refusal
    audit(dsn)
    print(f"{own_broker or 'postgres'}: every click stored {took:.1f} s after the kill")


def test_redis_returns_a_dead_workers_messages_after_the_heartbeat(tmp_path: Path) -> None:
    """With Redis, the messages a dead worker had taken come back once its heartbeat is
    older than MERCI_BROKER_HEARTBEAT_TTL, by maintenance on a schedule: Dramatiq alone runs
    it at random, one call in a thousand, and an idle worker makes a few calls a second."""
    redis_server = PrivateRedis(tmp_path)
    try:
        dead = make_broker(redis_server.url, "", heartbeat_ttl=2)
        dead.declare_queue("default")
        for i in range(5):
            dead.enqueue(dramatiq.Message(queue_name="default", actor_name="system.ping", args=(f"p{i}",),
                                          kwargs={}, options={}))
        taken = dead.consume("default", prefetch=5, timeout=100)
        claimed: list[dramatiq.MessageProxy] = []
        for _ in range(20):  # (its last call into Redis, its last heartbeat, is the fetch of the last one)
            if len(claimed) == 5:
                break
            claimed += [m for m in [next(taken)] if m is not None]
        died = time.monotonic()  # it never acknowledges them, nor calls Redis again
        assert len(claimed) == 5  # in the dead worker's hands (its acks), not in the queue

        alive = make_broker(redis_server.url, "", heartbeat_ttl=2)
        alive.declare_queue("default")
        back: list[str] = []
        polling = alive.consume("default", prefetch=5, timeout=100)
        deadline = died + 10
        while len(back) < 5 and time.monotonic() < deadline:
            message = next(polling)
            if message is not None:
                back.append(message.args[0])
                polling.ack(message)
        returned = time.monotonic() - died
        assert sorted(back) == [f"p{i}" for i in range(5)], f"{len(back)} of 5 back after {returned:.1f} s"
        assert 2 <= returned < 2 * 1.25 + 1.5, returned  # after the heartbeat TTL, within a quarter more
        print(f"a dead worker's messages back {returned:.2f} s after its last call (heartbeat TTL 2 s)")
        polling.close()
        alive.close()
    finally:
        redis_server.kill()


def test_a_click_batch_the_api_did_not_sign_is_dropped(fresh_db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The API role may queue clicks.ingest: a batch queued without the API's signature
    (by an injected statement, say) spends nobody's budget and is not retried."""
    dsn = fresh_db()
    info = asyncio.run(seed(dsn, supporters=3, things=11, clicks_per_supporter=0))
    first, thing = info["first_supporter"], info["first_thing"]

    def batch(supporter: int) -> list[list[object]]:
        return [[supporter, 1, thing, None, "k", "2025-01-15T12:00:00+00:00", "click"]]

    secret = load(database_url=dsn).secret_key
    queue = Queue(make_broker("", dsn))
    queue.send("clicks.ingest", batch(first), queue_name="clicks")  # unsigned
    queue.send("clicks.ingest", batch(first + 1), sign_batch(batch(first + 1), "not the key"), queue_name="clicks")
    queue.send("clicks.ingest", batch(first + 2), sign_batch(batch(first + 2), secret), queue_name="clicks")
    queue.close()
    worker = start_worker(dsn, tmp_path / "w.log", threads=1, **FAST)
    try:
        wait_until(lambda: system_scalar(dsn, "select count(*) from dramatiq.queue where queue_name = 'clicks'"
                                         " and state in ('queued', 'consumed')") == 0, 60, "the batches handled")
    finally:
        worker.stop()
    assert [r[0] for r in system_fetch(dsn, "select supporter_id from clicks")] == [first + 2]
    assert "unsigned or forged click batch dropped" in (tmp_path / "w.log").read_text(errors="replace")


def seed_and_close_reference(interrupted: str, reference: str, *, supporters: int) -> None:
    """January 2025 seeded alike in both databases, and closed in `reference` without
    interruption (inline, 48 shards): the ledger `interrupted` must end with."""
    for dsn in (interrupted, reference):
        asyncio.run(seed(dsn, supporters=supporters, things=401, clicks_per_supporter=12))
    ref = subprocess.run([sys.executable, "-m", "runtime.cli", "close-month", "2025-01", "--inline", "--shards", "48"],
                         env=service_env(reference), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr


def close_by_workers(dsn: str, *extra: str) -> subprocess.Popen[str]:
    """`merci close-month 2025-01` in 48 shards, closed by the workers, waited for."""
    return subprocess.Popen([sys.executable, "-m", "runtime.cli", "close-month", "2025-01", "--shards", "48",
                             "--timeout", "240", *extra], env=service_env(dsn, **FAST), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_worker_killed_during_close_gives_the_uninterrupted_ledger(fresh_db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    interrupted, reference = fresh_db(), fresh_db()
    seed_and_close_reference(interrupted, reference, supporters=3000)
    worker = start_worker(interrupted, tmp_path / "w1.log", threads=1, **FAST)
    cli = close_by_workers(interrupted)
    try:
        wait_until(lambda: system_scalar(interrupted, "select count(*) from month_close_shards") >= 3, 120,
                   "shards to close")
        worker.kill_group()
        done = system_scalar(interrupted, "select count(*) from month_close_shards")
        assert done < 48, "the kill must land mid-close"
        assert system_scalar(interrupted, "select status from month_closes") == "running"
        worker = start_worker(interrupted, tmp_path / "w2.log", threads=2, **FAST)
        out, err = cli.communicate(timeout=300)
        assert cli.returncode == 0, out + err
    finally:
        if cli.poll() is None:
            cli.kill()
        worker.stop()
    assert ledger_snapshot(interrupted) == ledger_snapshot(reference)
    audit = subprocess.run([sys.executable, "-m", "runtime.cli", "audit"], env=service_env(interrupted), cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert audit.returncode == 0, audit.stderr


def stored_for(dsn: str, handle: str) -> int:
    return int(system_scalar(dsn, "select count(*) from clicks c join accounts a on a.id = c.supporter_id"
                                  " where a.handle = $1", handle))


FLATTR = """mutation($input: FlattrInput!) { flattr(input: $input) { click { status } userErrors { code } } }"""


def accept_clicks(base: str, n: int) -> tuple[str, list[str]]:
    """Sign up a funded supporter and have the API accept n clicks on new URLs."""
    fan, handle = _funded(base)
    keys = [f"r{i}" for i in range(n)]
    for key in keys:
        assert _flattr(fan, key) == {"click": {"status": "PENDING"}, "userErrors": []}
    return handle, keys


def test_postgres_broker_restart_keeps_accepted_clicks(tmp_path: Path) -> None:
    from runtime.embedded import EmbeddedPostgres

    pg = EmbeddedPostgres(tmp_path / "own-pg")  # a server of our own, to restart
    try:
        dsn = pg.ensure_database("merci")
        asyncio.run(migrate(dsn))
        api, base = start_api(dsn, tmp_path)
        handle, keys = accept_clicks(base, 40)
        api.stop()
        pg.stop()
        pg = EmbeddedPostgres(tmp_path / "own-pg")
        worker = start_worker(dsn, tmp_path / "w.log")
        try:
            wait_until(lambda: stored_for(dsn, handle) == len(keys), 60, "clicks after restart")
        finally:
            worker.stop()
        assert_stored_once(dsn, [(handle, key) for key in keys])
        audit(dsn)
    finally:
        pg.stop()


@pytest.mark.parametrize("kind", ["redis", "rabbitmq"])
def test_broker_stopped_and_started_keeps_accepted_clicks(fresh_db, kind: str,  # type: ignore[no-untyped-def]
                                                          tmp_path: Path) -> None:
    """A broker of the test's own, durably configured (Redis: AOF fsynced on every write;
    RabbitMQ: durable queues, persistent messages, publisher confirms), goes away with
    accepted clicks queued in it (Redis killed: a crash; RabbitMQ stopped), clicks are
    accepted while it is down (kept in the outbox), and it comes back: each click answered
    PENDING is stored exactly once, the API logs the outage once (not an error per click)
    and sends to the broker again by itself, and `merci audit` passes."""
    dsn = fresh_db()
    folder = tmp_path / kind
    folder.mkdir()
    server: PrivateRedis | PrivateRabbitMQ
    if kind == "redis":
        server = PrivateRedis(folder, durable=True)
        go_away = server.kill  # only what was fsynced survives
    else:
        server = PrivateRabbitMQ(folder)
        go_away = server.stop
    # Rate limits in the API's memory (test only): the broker is the only service under test.
    env = {"BROKER_URL": server.url, "MERCI_RATE_LIMIT_URL": "memory://"}
    api = worker = scheduler = None
    try:
        api, base = start_api(dsn, tmp_path, **env)
        fan, handle = _funded(base)
        queued = [f"q{i}" for i in range(30)]
        for key in queued:  # in the broker (no worker runs), and in the outbox until stored
            assert _flattr(fan, key) == {"click": {"status": "PENDING"}, "userErrors": []}
        assert queued_clicks(server.url, dsn) >= 1

        go_away()
        held = [f"h{i}" for i in range(20)]
        for key in held:  # the broker is down: accepted all the same, in the outbox unsent
            assert _flattr(fan, key) == {"click": {"status": "PENDING"}, "userErrors": []}
        started = time.monotonic()
        server.start()
        back_in = time.monotonic() - started
        assert queued_clicks(server.url, dsn) >= 1, "the broker must have kept the clicks queued in it"
        after = [f"a{i}" for i in range(10)]
        for key in after:  # the API reconnects by itself
            assert _flattr(fan, key) == {"click": {"status": "PENDING"}, "userErrors": []}

        worker = start_worker(dsn, tmp_path / "worker.log", threads=2, **env)
        scheduler = merci(dsn, tmp_path / "scheduler.log", "scheduler", "--interval", "1", **env)
        keys = queued + held + after
        wait_until(lambda: stored_for(dsn, handle) == len(keys), 60, "every accepted click stored")
        wait_until(lambda: queued_clicks(server.url, dsn) == 0, 30, "the broker to hold no click")
        wait_until(lambda: system_scalar(dsn, "select count(*) from click_outbox") == 0, 30, "the outbox emptied")
    finally:
        for service in (scheduler, worker, api):
            if service is not None:
                service.stop()
        server.kill()
    rows = system_fetch(dsn, "select c.idempotency_key, count(*) from clicks c join accounts a"
                             " on a.id = c.supporter_id where a.handle = $1 group by 1", handle)
    assert {r[0]: r[1] for r in rows} == {k: 1 for k in keys}  # each once
    assert system_scalar(dsn, "select count(*) from click_rejections") == 0
    log = api.log.read_text(errors="replace")
    assert log.count("handing accepted clicks to the broker: failing") == 1, log[-3000:]
    assert log.count("handing accepted clicks to the broker: working again") == 1, log[-3000:]
    assert len(log) < 100_000, "the outage logged per click"  # (RabbitMQ: ~40 pika lines per refused click)
    audit(dsn)
    print(f"{kind} back in {back_in:.1f} s")


def _funded(base: str) -> tuple[GraphQLClient, str]:
    gql = GraphQLClient(base)
    account = sign_up(gql)
    fan = gql.as_(account["token"])
    assert fan("mutation { topUp(input: {amount: 5000}) { userErrors { code } } }")["topUp"]["userErrors"] == []
    return fan, account["handle"]


def _flattr(fan: GraphQLClient, key: str) -> dict[str, Any]:
    answer: dict[str, Any] = fan(FLATTR, {"input": {"url": f"https://fault-{key}.example/", "idempotencyKey": key}})
    return answer["flattr"]  # type: ignore[no-any-return]


# ------------------------------------------------------------ PostgreSQL outages (issue 17)


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A PostgreSQL server of the test's own, with Merci migrated into database `merci`:
    stopped and restarted at will (the machine's shared server never is)."""
    pg = PrivatePostgres()
    try:
        conn_url = pg.url
        asyncio.run(_create_db(conn_url, "merci"))
        pg.dsn = with_database(conn_url, "merci")  # type: ignore[attr-defined]
        asyncio.run(migrate(pg.dsn))  # type: ignore[attr-defined]
        yield pg
    finally:
        pg.destroy()


async def _create_db(url: str, name: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'create database "{name}"')
    finally:
        await conn.close()


def _ping(queue: Queue, marker: str) -> bool:
    try:
        queue.send("system.ping", marker)
        return True
    except Exception:  # the server is restarting: this ping is not sent
        return False


def test_postgres_restarts_promptly_with_workers_connected(private_pg: PrivatePostgres, tmp_path: Path) -> None:
    """Workers keep their connections on a loop that lives as long as they do: PostgreSQL
    restarted (`pg_ctl restart -m fast`) under a stream of messages stops and starts in
    seconds, never waiting authentication_timeout for a worker's half-made connection,
    and the workers carry on with the messages sent after it."""
    dsn = private_pg.dsn  # type: ignore[attr-defined]
    worker = start_worker(dsn, tmp_path / "w.log", threads=4, **FAST)
    queue = Queue(make_broker("", dsn))
    sent: list[str] = []
    try:
        for i in range(30):
            if _ping(queue, f"warm-{i}"):
                sent.append(f"warm-{i}")
        wait_until(lambda: scalar_pings(dsn) >= len(sent), 60, "the workers to handle the first pings")
        timings = []
        for restart in range(3):
            # Messages in flight while the server goes down and comes back: the workers'
            # pools lose their connections and reconnect as the next messages arrive.
            for i in range(20):
                if _ping(queue, f"r{restart}-{i}"):
                    sent.append(f"r{restart}-{i}")
            started = time.monotonic()
            done = private_pg.restart(timeout=10)
            timings.append(time.monotonic() - started)
            assert done.returncode == 0, f"restart {restart}: {done.stdout}{done.stderr}"
            assert timings[-1] < 10, timings
            time.sleep(1)
        for i in range(20):
            assert _ping(queue, f"after-{i}")
            sent.append(f"after-{i}")
        wait_until(lambda: {f"after-{i}" for i in range(20)} <= set(pings(dsn)), 90,
                   "the workers to carry on after the restarts")
        assert worker.proc.poll() is None, worker.output()[-3000:]
        assert max(timings) < 10, timings
    finally:
        queue.close()
        worker.stop()


class ClickStream:
    """A bounded stream of clicks through the API: `per_fan` clicks on new URLs from each
    funded supporter, on a thread each, at about `rate` a second in all. Each click is sent
    once and its answer kept: PENDING (accepted), UNAVAILABLE (not accepted: a client
    would retry it), or anything else (a bug: a 500, a hang past 10 s, another error)."""

    def __init__(self, base: str, fans: list[tuple[str, str]], *, per_fan: int, rate: float) -> None:
        self.base, self.fans, self.per_fan, self.pause = base, fans, per_fan, len(fans) / rate
        self.accepted: list[tuple[str, str]] = []  # (handle, idempotency key)
        self.unavailable = 0
        self.problems: list[str] = []
        self.slowest = 0.0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._send, args=(i,), daemon=True) for i in range(len(fans))]
        for thread in self.threads:
            thread.start()

    def _send(self, n: int) -> None:
        token, handle = self.fans[n]
        with httpx.Client(base_url=self.base, headers={"authorization": f"Bearer {token}"}, timeout=10) as http:
            for i in range(self.per_fan):
                key = f"s{n}-{i}"
                started = time.monotonic()
                try:
                    r = http.post("/graphql", json={"query": FLATTR, "variables": {
                        "input": {"url": f"https://stream-{n}-{i}.example/", "idempotencyKey": key}}})
                    answer = self._answer(r)
                except httpx.HTTPError as exc:
                    answer = f"{type(exc).__name__}: {exc}"
                with self.lock:
                    self.slowest = max(self.slowest, time.monotonic() - started)
                    if answer == "PENDING":
                        self.accepted.append((handle, key))
                    elif answer == "UNAVAILABLE":
                        self.unavailable += 1
                    else:
                        self.problems.append(answer)
                time.sleep(self.pause)

    @staticmethod
    def _answer(r: httpx.Response) -> str:
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        errors = [e.get("extensions", {}).get("code") for e in body.get("errors") or []]
        flattr = (body.get("data") or {}).get("flattr")
        if r.status_code == 200 and flattr and flattr["userErrors"] == [] and flattr["click"]["status"] == "PENDING":
            return "PENDING"
        if (flattr and [e["code"] for e in flattr["userErrors"]] == ["UNAVAILABLE"]) or (
                r.status_code == 503 and errors == ["UNAVAILABLE"]):
            return "UNAVAILABLE"
        return f"{r.status_code} {r.text[:200]}"

    def sent(self) -> int:
        with self.lock:
            return len(self.accepted) + self.unavailable + len(self.problems)

    def join(self, timeout: float) -> None:
        for thread in self.threads:
            thread.join(timeout)
        assert not any(t.is_alive() for t in self.threads), "a client hung"


def assert_stored_once(dsn: str, accepted: list[tuple[str, str]]) -> None:
    """Every click answered PENDING is stored, none twice (nor anything never sent)."""
    rows = system_fetch(dsn, "select a.handle, c.idempotency_key, count(*) from clicks c"
                             " join accounts a on a.id = c.supporter_id group by 1, 2")
    assert all(r[2] == 1 for r in rows)
    stored = {(r[0], r[1]) for r in rows}
    assert set(accepted) <= stored, f"accepted but lost: {sorted(set(accepted) - stored)[:5]}"
    assert system_scalar(dsn, "select count(*) from click_rejections") == 0


def test_postgres_restarted_during_ingestion_keeps_every_accepted_click(private_pg: PrivatePostgres,
                                                                        tmp_path: Path) -> None:
    """PostgreSQL restarted (`pg_ctl restart -m fast`) while the API accepts a stream of
    clicks (~40 a second) and a worker stores them: the restart completes in under 10 s,
    each click is answered PENDING or UNAVAILABLE within 5 s, and every PENDING one is
    stored exactly once."""
    dsn = private_pg.dsn  # type: ignore[attr-defined]
    api, base = start_api(dsn, tmp_path)
    worker = start_worker(dsn, tmp_path / "w.log", threads=2, **FAST)
    try:
        fans = [_token_and_handle(*_funded(base)) for _ in range(4)]
        stream = ClickStream(base, fans, per_fan=100, rate=40)
        wait_until(lambda: system_scalar(dsn, "select count(*) from clicks") >= 60, 30, "clicks being stored")
        started = time.monotonic()
        done = private_pg.restart(timeout=10)
        took = time.monotonic() - started
        assert done.returncode == 0 and took < 10, (took, done.stdout + done.stderr)
        during = stream.sent()
        stream.join(60)
        assert stream.sent() > during, "clicks must be sent after the restart too"
        assert stream.problems == [], stream.problems[:5]
        assert stream.slowest < 5, stream.slowest
        assert len(stream.accepted) >= 300, (len(stream.accepted), stream.unavailable)  # it healed
        wait_until(lambda: system_scalar(dsn, "select count(*) from dramatiq.queue where queue_name = 'clicks'"
                                              " and state <> 'rejected'") == 0, 60, "the clicks stored")
    finally:
        worker.stop()
        api.stop()
    assert_stored_once(dsn, stream.accepted)
    audit(dsn)
    print(f"restart {took:.2f} s; {len(stream.accepted)} accepted, {stream.unavailable} UNAVAILABLE,"
          f" slowest answer {stream.slowest:.2f} s")


def test_postgres_restarted_during_a_close_with_workers_gives_the_uninterrupted_ledger(
        private_pg: PrivatePostgres, tmp_path: Path) -> None:
    """PostgreSQL restarted while workers close a month (`merci close-month`, sharded) and
    the API accepts a stream of clicks into the current one: the restart completes in under
    10 s, the close resumes by itself (the command reconnects, the workers retry the shards
    the restart cut), its ledger is the one an uninterrupted close gives, every click
    answered PENDING is stored once, and `merci audit` passes."""
    closing = private_pg.dsn  # type: ignore[attr-defined]
    asyncio.run(_create_db(private_pg.url, "reference"))
    reference = with_database(private_pg.url, "reference")
    asyncio.run(migrate(reference))
    seed_and_close_reference(closing, reference, supporters=2500)
    api, base = start_api(closing, tmp_path)
    worker = start_worker(closing, tmp_path / "w.log", threads=2, **FAST)
    cli = stream = None
    try:
        fans = [_token_and_handle(*_funded(base)) for _ in range(2)]
        stream = ClickStream(base, fans, per_fan=200, rate=30)  # ~13 s
        wait_until(lambda: stream.sent() >= 20, 30, "the stream to flow")
        cli = close_by_workers(closing, "--retry-for", "60")
        wait_until(lambda: system_scalar(closing, "select count(*) from month_close_shards") >= 3, 120,
                   "shards to close")
        during = stream.sent()
        started = time.monotonic()
        done = private_pg.restart(timeout=10)
        took = time.monotonic() - started
        assert done.returncode == 0 and took < 10, (took, done.stdout + done.stderr)
        assert system_scalar(closing, "select count(*) from month_close_shards") < 48, "the restart must land mid-close"
        out, err = cli.communicate(timeout=300)
        assert cli.returncode == 0, out + err
        resumed = time.monotonic() - started
        stream.join(60)
        assert 0 < during < stream.sent(), "the restart must land mid-stream"
        assert stream.problems == [] and stream.slowest < 5, (stream.problems[:5], stream.slowest)
        wait_until(lambda: system_scalar(closing, "select count(*) from dramatiq.queue where queue_name = 'clicks'"
                                                  " and state <> 'rejected'") == 0, 60, "the clicks stored")
    finally:
        if cli is not None and cli.poll() is None:
            cli.kill()
        worker.stop()
        api.stop()
    assert stream is not None
    assert_stored_once(closing, stream.accepted)
    # The close's ledger is the uninterrupted one; the stream's supporters add their top-ups.
    expected = ledger_snapshot(reference)
    known = {r[0] for r in expected}
    assert [r for r in ledger_snapshot(closing) if r[0] in known] == expected
    assert len({r[0] for r in ledger_snapshot(closing)} - known) == len(fans)
    audit(closing)
    print(f"restart {took:.2f} s; close done {resumed:.1f} s after it began; {len(stream.accepted)} clicks"
          f" accepted, {stream.unavailable} UNAVAILABLE meanwhile")


def _token_and_handle(fan: GraphQLClient, handle: str) -> tuple[str, str]:
    return fan.http.headers["authorization"].removeprefix("Bearer "), handle


def pings(dsn: str) -> list[str]:
    return [r[0] for r in system_fetch(dsn, "select marker from worker_pings")]


def scalar_pings(dsn: str) -> int:
    return int(system_scalar(dsn, "select count(*) from worker_pings"))


ME = "{ me { handle } }"


def _outage_requests(base: str, token: str) -> list[tuple[str, Callable[[httpx.Client, int], httpx.Response]]]:
    """What a client sends during an outage: an authenticated query (authentication's
    lookup), a click (graph.fastpath and the click batcher), a page, the readiness probe."""
    auth = {"authorization": f"Bearer {token}"}
    return [
        ("me", lambda http, i: http.post(f"{base}/graphql", json={"query": ME}, headers=auth)),
        ("flattr", lambda http, i: http.post(f"{base}/graphql", headers=auth, json={"query": FLATTR, "variables": {
            "input": {"url": f"https://outage-{i}.example/", "idempotencyKey": f"o{i}"}}})),
        ("page", lambda http, i: http.get(f"{base}/directory")),
        ("readyz", lambda http, i: http.get(f"{base}/readyz")),
    ]


def _is_unavailable(r: httpx.Response) -> bool:
    if r.status_code != 503 or "retry-after" not in r.headers:
        return False
    if r.headers.get("content-type", "").startswith("application/json") and r.url.path == "/graphql":
        return [e["extensions"]["code"] for e in r.json()["errors"]] == ["UNAVAILABLE"]
    return True


def test_postgres_stopped_answers_unavailable_promptly_and_heals(private_pg: PrivatePostgres, tmp_path: Path) -> None:
    """The API's PostgreSQL stopped for 20 s under a bounded stream of requests: every
    answer meanwhile is UNAVAILABLE (HTTP 503 with Retry-After; a GraphQL error with that
    code) within 5 s, none hangs, none is a bare 500; once the server is back, requests
    succeed again by themselves."""
    dsn = private_pg.dsn  # type: ignore[attr-defined]
    api, base = start_api(dsn, tmp_path)
    gql = GraphQLClient(base)
    token = sign_up(gql)["token"]
    gql.as_(token)("mutation { topUp(input: {amount: 5000}) { userErrors { code } } }")
    requests = _outage_requests(base, token)
    answers: list[tuple[str, float, httpx.Response | Exception, float]] = []  # (kind, sent at, answer, seconds)
    phase = {"now": "before"}
    i = 0

    def send_round(http: httpx.Client) -> None:
        nonlocal i
        for kind, request in requests:
            i += 1
            started = time.monotonic()
            try:
                r: httpx.Response | Exception = request(http, i)
            except httpx.HTTPError as exc:  # a hang (past the client's 10 s) or a cut connection
                r = exc
            answers.append((f"{phase['now']}:{kind}", started, r, time.monotonic() - started))

    try:
        with httpx.Client(timeout=10) as http:
            send_round(http)
            assert all(isinstance(r, httpx.Response) and r.status_code == 200 for _, _, r, _ in answers), answers
            stopped = private_pg.stop()
            assert stopped.returncode == 0, stopped.stderr
            phase["now"] = "down"
            down_until = time.monotonic() + 20
            while time.monotonic() < down_until:  # a bounded stream: ~4 requests per 0.25 s
                send_round(http)
                time.sleep(0.25)
            private_pg.start()
            phase["now"] = "after"
            healed = None
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                before = len(answers)
                send_round(http)
                if all(isinstance(r, httpx.Response) and r.status_code == 200 for _, _, r, _ in answers[before:]):
                    healed = time.monotonic()
                    break
                time.sleep(0.5)
        down = [a for a in answers if a[0].startswith("down:")]
        assert len(down) >= 40
        problems = [(k, r if isinstance(r, Exception) else (r.status_code, r.text[:200]), round(s, 2))
                    for k, _, r, s in down if isinstance(r, Exception) or not _is_unavailable(r) or s >= 5]
        assert problems == [], problems
        slowest = max(s for _, _, _, s in down)
        assert slowest < 5, slowest
        assert healed is not None, [(k, r if isinstance(r, Exception) else (r.status_code, r.text[:200]))
                                    for k, _, r, _ in answers[-8:]]
        assert not any(isinstance(r, httpx.Response) and (r.status_code == 500 or "Internal Server Error" in r.text)
                       for _, _, r, _ in answers)
        # Every answer but the probe's counts (an alert on the probe's would fire on every rollout).
        counted = scrape(f"{base}/metrics")
        assert value(counted, "merci_unavailable_total", service="database") >= len(
            [k for k, *_ in down if k != "down:readyz"])
        assert not any(isinstance(r, httpx.Response) and r.status_code == 200
                       for k, _, r, _ in down if k != "down:page"), "a request answered without its database"
    finally:
        api.stop()


def _close_month(dsn: str, period: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "runtime.cli", "close-month", period, "--inline", *extra],
                            env=service_env(dsn), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_close_month_waits_for_the_database_then_gives_up_with_its_own_code(private_pg: PrivatePostgres) -> None:
    """`merci close-month` with the database down keeps reconnecting, and closes once it is
    back; down for longer than --retry-for, it exits 4 ("database unavailable", not the
    self-check's 1) saying the close resumes when re-run."""
    dsn = private_pg.dsn  # type: ignore[attr-defined]
    assert private_pg.stop().returncode == 0
    waiting = _close_month(dsn, "2025-01", "--retry-for", "60")
    try:
        time.sleep(4)
        assert waiting.poll() is None, waiting.communicate()  # still trying
        private_pg.start()
        out, err = waiting.communicate(timeout=60)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, err
    assert "closed 2025-01" in out and "trying again" in err
    assert system_scalar(dsn, "select status from month_closes where period = '2025-01-01'") == "done"

    assert private_pg.stop().returncode == 0
    started = time.monotonic()
    gave_up = _close_month(dsn, "2025-02", "--retry-for", "3")
    try:
        out, err = gave_up.communicate(timeout=60)
    finally:
        private_pg.start()
    assert gave_up.returncode == 4, err
    assert "resumes where it stopped when re-run" in err and "Traceback" not in err
    assert time.monotonic() - started < 20
