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
    comes back empty. The machine's shared Redis is never touched; this one is killed by PID."""

    def __init__(self, folder: Path) -> None:
        import shutil

        from tests.conftest import free_port, need

        need(shutil.which("redis-server") is not None, "redis-server is not installed")
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
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
