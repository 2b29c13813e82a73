"""Shared by the operations tests: scraping metrics, waiting, ledger snapshots."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Service, ledger_snapshot, service_env, system_fetch, system_scalar, wait_for

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    r = httpx.get(url, timeout=10)
    assert r.status_code == 200, r.text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 when the series does not exist (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


# The shared helpers, under the names this package's tests use.
fetch = system_fetch
scalar = system_scalar
ledger = ledger_snapshot


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    return wait_for(predicate, timeout, what, interval=0.2)


def audit(database_url: str) -> None:
    """`merci audit` passes: the ledger's invariants hold."""
    from tests.conftest import ROOT

    done = subprocess.run([sys.executable, "-m", "runtime.cli", "audit"], env=service_env(database_url), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def merci(database_url: str, log: Path, *args: str, **env: str) -> Service:
    """A `merci …` command as a service (stopped by PID at teardown)."""
    return Service([sys.executable, "-m", "runtime.cli", *args], service_env(database_url, **env), log)


PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PrivatePostgres:
    """A PostgreSQL server of the test's own (Debian's binaries, TCP on a free port), to
    stop and restart: the machine's shared server is never touched. Runs as the
    `postgres` OS user when the tests run as root (PostgreSQL refuses root)."""

    def __init__(self, port: int | None = None) -> None:
        import getpass
        import shutil
        import subprocess
        import tempfile

        from tests.conftest import free_port, need

        need((PG_BIN / "pg_ctl").exists(), f"{PG_BIN} (Debian's postgresql-15) is not installed")
        # Not under pytest's tmp_path: the postgres user cannot enter root's 0700 folders.
        folder = Path(tempfile.mkdtemp(prefix="merci-private-pg-"))
        self.folder = folder
        self.data = folder / "data"
        self.port = port or free_port()
        self.prefix = ["runuser", "-u", "postgres", "--"] if getpass.getuser() == "root" else []
        if self.prefix:
            shutil.chown(folder, "postgres", "postgres")
        subprocess.run([*self.prefix, str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                        "--auth", "trust", "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{folder}'\n"
                       "fsync = off\nmax_connections = 100\n")
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str, timeout: float = 60) -> Any:
        import subprocess

        return subprocess.run([*self.prefix, str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l",
                               str(self.folder / "server.log"), *args], capture_output=True, text=True,
                              timeout=timeout + 10)

    def start(self) -> None:
        done = self.pg_ctl("start", "-w", "-t", "30")
        assert done.returncode == 0, done.stderr + done.stdout

    def stop(self, timeout: int = 30) -> Any:
        return self.pg_ctl("stop", "-m", "fast", "-w", "-t", str(timeout), timeout=timeout)

    def restart(self, timeout: int = 10) -> Any:
        """`pg_ctl restart -m fast`: its result (returncode 1 if the server did not stop in time)."""
        return self.pg_ctl("restart", "-m", "fast", "-w", "-t", str(timeout), timeout=timeout)

    def destroy(self) -> None:
        import shutil

        self.pg_ctl("stop", "-m", "immediate", "-w", "-t", "30")
        shutil.rmtree(self.folder, ignore_errors=True)


class PrivateRedis:
    """`redis-server` of the test's own on a free port, keeping nothing on disk: a restart
    comes back empty; or, `durable`, as production must run it (an append-only file fsynced
    on every write): a restart, even after a crash, keeps every message it acknowledged.
    The machine's shared Redis is never touched; this one is killed by PID."""

    def __init__(self, folder: Path, *, durable: bool = False) -> None:
        import shutil

        from tests.conftest import free_port, need

        need(shutil.which("redis-server") is not None, "redis-server is not installed")
        self.folder = folder
        self.port = free_port()
        self.persistence = ["--appendonly", "yes", "--appendfsync", "always"] if durable else ["--appendonly", "no"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *self.persistence,
             "--dir", str(self.folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        try:
            wait_for(lambda: self._pings(client), 10, "redis to start", interval=0.1)
        finally:
            client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # a crash: it kept nothing
            self.proc.wait()
        self.proc = None

    def client(self) -> Any:
        import redis

        return redis.Redis(port=self.port, decode_responses=True)

    @staticmethod
    def _pings(client: Any) -> bool:
        try:
            return bool(client.ping())
        except Exception:  # not listening yet
            return False


RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


class PrivateRabbitMQ:
    """A RabbitMQ node of the test's own (Debian's rabbitmq-server, run as it is, not through
    the /usr/sbin wrapper that switches to the rabbitmq user), stopped and started at will;
    the machine's shared node is never touched. Everything it keeps is under `folder`: its
    data (a stop and start keeps the durable queues' persistent messages), its logs, and
    the Erlang cookie in its own HOME, so that it runs as root without root's cookie. It
    listens on 127.0.0.1 on free ports (AMQP and Erlang distribution), with no plugin (the
    management plugin would take 15672). Stopped by its process group's id."""

    def __init__(self, folder: Path) -> None:
        import os
        import secrets

        from tests.conftest import free_port, need

        need(RABBITMQ_SERVER.exists(), f"{RABBITMQ_SERVER} (Debian's rabbitmq-server) is not installed")
        self.folder = folder
        self.port = free_port()
        self.node = f"merci-test-{self.port}@localhost"
        home = folder / "home"
        for part in ("home", "mnesia", "log"):
            (folder / part).mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16))
        cookie.chmod(0o400)  # Erlang refuses a cookie others may read
        (folder / "enabled_plugins").write_text("[].\n")
        self.env = {**os.environ, "HOME": str(home), "RABBITMQ_NODENAME": self.node,
                    "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(self.port),
                    "RABBITMQ_DIST_PORT": str(free_port()), "ERL_EPMD_ADDRESS": "127.0.0.1",
                    "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"), "RABBITMQ_LOG_BASE": str(folder / "log"),
                    "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
                    "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq"),  # (none: the defaults)
                    "RABBITMQ_ADVANCED_CONFIG_FILE": str(folder / "advanced.config")}
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def start(self, timeout: float = 60) -> float:
        """Start the node and wait until it takes AMQP connections; returns how long it took."""
        import time

        started = time.monotonic()
        with (self.folder / "server.log").open("ab") as out:
            self.proc = subprocess.Popen([str(RABBITMQ_SERVER)], env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         cwd=self.folder, start_new_session=True)
        wait_for(self._accepts, timeout, f"RabbitMQ node {self.node} to start", interval=0.2)
        return time.monotonic() - started

    def _accepts(self) -> bool:
        import pika

        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"RabbitMQ exited {self.proc.returncode}: "
                                 + (self.folder / "server.log").read_text(errors="replace")[-3000:])
        try:
            pika.BlockingConnection(pika.URLParameters(self.url + "?connection_attempts=1&socket_timeout=1")).close()
            return True
        except Exception:  # not listening yet
            return False

    def stop(self, timeout: float = 30) -> None:
        """A clean stop (SIGTERM: the node shuts down as `rabbitmqctl stop` would)."""
        self._signal(15, timeout)

    def kill(self) -> None:
        self._signal(9, 30)

    def _signal(self, sig: int, timeout: float) -> None:
        import os

        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:  # already gone
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        # The shell script may end before its Erlang VM: wait for the group to be empty.
        for _ in range(int(timeout * 10)):
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                break
            import time

            time.sleep(0.1)
        else:
            os.killpg(self.proc.pid, 9)
        self.proc = None
