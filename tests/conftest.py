"""Test fixtures: a real PostgreSQL (DATABASE_URL, or embedded), a fresh database
per session with migrations applied, and real server processes over HTTP."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psycopg
import pytest

from merci import config
from merci.config import with_database

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI") == "true"


def need(condition: bool, reason: str) -> None:
    """Skip locally when an outside tool is missing; in CI that is a failure."""
    if not condition:
        if IN_CI:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A PostgreSQL server URL with a superuser: DATABASE_URL, or an embedded server."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    from runtime.embedded import EmbeddedPostgres

    data = Path(tempfile.mkdtemp(prefix="merci-test-pg-"))
    pg = EmbeddedPostgres(data)
    try:
        yield pg.uri
    finally:
        pg.stop()
        shutil.rmtree(data, ignore_errors=True)


def create_database(server: str, prefix: str = "merci_test") -> str:
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    return with_database(server, name)


def drop_database(server: str, dsn: str) -> None:
    name = config.database_name(dsn)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@contextmanager
def migrated_database(server: str, prefix: str = "merci_test") -> Iterator[str]:
    """A database of its own, migrated, dropped afterwards (its owner's DSN)."""
    import asyncio

    from merci.db import migrate

    dsn = create_database(server, prefix)
    try:
        asyncio.run(migrate(dsn))
        yield dsn
    finally:
        drop_database(server, dsn)


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """A fresh, migrated database for the whole session (owner/migration role)."""
    with migrated_database(server_url) as dsn:
        yield dsn


@pytest.fixture(scope="session")
def settings(database_url: str) -> config.Settings:
    return config.Settings(database_url=database_url, broker_url="").derived()


@pytest.fixture(scope="session")
async def system_pool(settings: config.Settings) -> AsyncIterator[asyncpg.Pool]:
    from merci.db import create_pool

    pool = await create_pool(settings.system_database_url, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def app_pool(settings: config.Settings) -> AsyncIterator[asyncpg.Pool]:
    from merci.db import create_pool

    pool = await create_pool(settings.app_database_url, max_size=4)
    yield pool
    await pool.close()


def service_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(DATABASE_URL=database_url, MERCI_ENV="test", MERCI_WORKER_METRICS="0",
               MERCI_FETCH_ALLOW_LOOPBACK="1", PYTHONUNBUFFERED="1",
               # The fixtures sign up and click by the hundred from 127.0.0.1: production's
               # limits, a thousand times over (tests/api/test_rate_limits.py runs them as shipped).
               MERCI_RATE_LIMIT_MULTIPLIER="1000",
               # ...so each of their accounts is new, and all share one address: the fraud
               # rules on bursts and shared addresses would hold their clicks out of every close
               # (tests/scenarios/test_click_fraud.py runs the rules as shipped).
               MERCI_FRAUD_BURST_CLICKS="1000000", MERCI_FRAUD_SHARED_ADDRESS_ACCOUNTS="1000000")
    env.pop("BROKER_URL", None)
    env.update(extra)
    return env


class Service:
    """A child process (API, worker, scheduler) stopped by PID at teardown."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT) -> None:
        self.log = log
        self.out = log.open("ab")
        # Own session: a kill reaches Dramatiq's worker children too.
        self.proc = subprocess.Popen(argv, env=env, stdout=self.out, stderr=subprocess.STDOUT, cwd=cwd,
                                     start_new_session=True)

    def kill_group(self) -> None:
        """SIGKILL the process and every child: a crash, not a shutdown."""
        try:
            os.killpg(self.proc.pid, 9)
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.out.close()

    def stop(self, sig: int = 15, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        try:  # nothing of ours may outlive the test
            os.killpg(self.proc.pid, 9)
        except ProcessLookupError:
            pass
        self.out.close()
        return int(self.proc.returncode)

    def output(self) -> str:
        self.out.flush()
        return self.log.read_text(errors="replace")


def wait_http(url: str, service: Service, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            raise RuntimeError(f"service exited early:\n{service.output()[-4000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready:\n{service.output()[-4000:]}")


def start_worker(database_url: str, log: Path, *, threads: int = 4, **env: str) -> Service:
    return Service([sys.executable, "-m", "dramatiq", "workers", "--processes", "1", "--threads", str(threads)],
                   service_env(database_url, **env), log)


def start_api(database_url: str, tmp: Path, face: str = "all", **env: str) -> tuple[Service, str]:
    port = free_port()
    svc = Service([sys.executable, "-m", "runtime.cli", "serve", face, "--port", str(port), "--quiet"],
                  service_env(database_url, **env), tmp / f"api-{face}-{port}.log")
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/healthz", svc)
    return svc, base


@contextmanager
def fast_and_slow_apis(database_url: str, tmp: Path) -> Iterator[tuple[str, str]]:
    """Two APIs on one database: with graph.fastpath, and without it (MERCI_FAST_PATH=0),
    so that a test can send both the same requests and compare the answers."""
    fast, fast_url = start_api(database_url, tmp)
    try:
        slow, slow_url = start_api(database_url, tmp, MERCI_FAST_PATH="0")
        try:
            yield fast_url, slow_url
        finally:
            slow.stop()
    finally:
        fast.stop()


def fast_path_count(base: str, field: str) -> float:
    """How many requests for `field` the API at `base` answered from a plan (its /metrics)."""
    text = httpx.get(base + "/metrics").text
    m = re.search(rf'^merci_graphql_fast_path_total\{{field="{field}"\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.fixture(scope="session")
def artifacts() -> Path:
    path = ROOT / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def api_url(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    svc, base = start_api(database_url, tmp_path_factory.mktemp("api"))
    try:
        yield base
    finally:
        svc.stop()


class GraphQLClient:
    def __init__(self, base: str, token: str | None = None, tenant: str | None = None) -> None:
        headers = {}
        if token:
            headers["authorization"] = f"Bearer {token}"
        if tenant:
            headers["x-merci-tenant"] = tenant
        self.http = httpx.Client(base_url=base, headers=headers, timeout=30)

    def raw(self, query: str, variables: dict[str, Any] | None = None) -> httpx.Response:
        return self.http.post("/graphql", json={"query": query, "variables": variables or {}})

    def __call__(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        r = self.raw(query, variables)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        assert "errors" not in body, body["errors"]
        return body["data"]  # type: ignore[no-any-return]

    def as_(self, token: str) -> GraphQLClient:
        return GraphQLClient(str(self.http.base_url), token)


@pytest.fixture
def gql(api_url: str) -> GraphQLClient:
    return GraphQLClient(api_url)


def unique(prefix: str = "u") -> str:
    return f"{prefix}{secrets.token_hex(4)}"


SIGN_UP = """mutation($input: SignUpInput!) { signUp(input: $input) {
  token account { id handle email } userErrors { field message code } } }"""


VERIFY_EMAIL = """mutation($input: VerifyEmailInput!) { verifyEmail(input: $input) {
  token account { id handle email emailVerified } userErrors { field message code } } }"""


def mailed_token(base: str, email: str, path: str = "/account/verify") -> str:
    """The token of the latest link to `path` mailed to `email`, from the dev mailbox."""
    mails = httpx.get(f"{base}/dev/mailbox", params={"to": email, "format": "json"}, timeout=30).json()
    for m in mails:
        found = re.search(re.escape(path) + r"\?token=([^&\s]+)", m["body"])
        if found:
            from urllib.parse import unquote

            return unquote(found.group(1))
    raise AssertionError(f"no link to {path} mailed to {email}: {mails}")


def sign_up(client: GraphQLClient, handle: str | None = None, tenant: str | None = None) -> dict[str, Any]:
    """An account signed up and verified as its owner would: signUp, the link in the dev
    mailbox, verifyEmail (which logs in)."""
    handle = handle or unique("user_")
    c = GraphQLClient(str(client.http.base_url), tenant=tenant) if tenant else client
    email = f"{handle}@example.org"
    data = c(SIGN_UP, {"input": {"email": email, "password": "correct horse battery", "handle": handle}})["signUp"]
    assert data["userErrors"] == [], data
    verified = c(VERIFY_EMAIL, {"input": {"token": mailed_token(str(client.http.base_url), email)}})["verifyEmail"]
    assert verified["userErrors"] == [] and verified["token"], verified
    return {"handle": handle, "token": verified["token"], "id": verified["account"]["id"], "email": email}


def wait_for(predicate: Any, timeout: float = 30, what: str = "condition", interval: float = 0.1) -> Any:
    """Poll until `predicate()` is truthy; return that value, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out waiting for {what}")


async def _system_fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(config.with_user(dsn, config.SYSTEM_ROLE))
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def system_fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    """Rows read as merci_system (sees every tenant), from synchronous test code."""
    import asyncio

    return asyncio.run(_system_fetch(dsn, sql, *args))


def system_scalar(dsn: str, sql: str, *args: object) -> Any:
    return system_fetch(dsn, sql, *args)[0][0]


def ledger_snapshot(dsn: str) -> list[tuple[object, ...]]:
    """Every entry by its natural keys, for comparing two ledgers whatever their ids."""
    return [tuple(r) for r in system_fetch(dsn, """
        select j.idem_key, la.kind, la.owner_account_id, la.thing_id, e.amount, e.thing_id
          from journals j join entries e on e.journal_id = j.id join ledger_accounts la on la.id = e.ledger_account_id
         order by 1, 2, 3, 4, 5, 6""")]


PROVE_SITE_SQL = """
insert into sites (tenant_id, owner_id, url, host, verification_token, verified_at, verification_method)
select a.tenant_id, a.id, $2, $3, 'proven-in-a-test', now(), $4 from accounts a where a.handle = $1
on conflict (owner_id, url) do update set verified_at = coalesce(sites.verified_at, now())
returning id
"""


def prove_site(dsn: str, handle: str, url: str, method: str = "well_known") -> int:
    """A verified site of `handle` (as the verification worker would record it): with
    `well_known` its whole host is theirs, with `meta` the URL's path. Things are a
    creator's only by such proof (migration 0015)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    site = f"{parts.scheme}://{parts.netloc}/" if method == "well_known" else url
    return int(system_scalar(dsn, PROVE_SITE_SQL, handle, site, parts.hostname, method))


def budget_left(content: bytes) -> bytes:
    """An answer with its extensions.cost.throttleStatus.currentlyAvailable blanked."""
    return re.sub(rb'"currentlyAvailable":\d+', b'"currentlyAvailable":0', content)
