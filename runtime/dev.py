"""`merci dev`: PostgreSQL (embedded unless DATABASE_URL), migrations, demo data,
then the API, a worker and the scheduler as child processes. SIGTERM or Ctrl-C
stops them all, then the embedded server: nothing it started is left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from merci import config


class DevRuntime:
    def __init__(self, *, port: int, data_dir: Path, demo: bool) -> None:
        self.port = port
        self.data_dir = data_dir
        self.demo = demo
        self.children: list[subprocess.Popen[bytes]] = []
        self.stopping = False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        embedded = None
        env = dict(os.environ)
        try:
            if not env.get("DATABASE_URL"):
                from runtime.embedded import EmbeddedPostgres

                self.data_dir.mkdir(parents=True, exist_ok=True)
                embedded = EmbeddedPostgres(self.data_dir)
                env["DATABASE_URL"] = embedded.ensure_database("merci")
                print(f"embedded PostgreSQL in {embedded.pgdata}", flush=True)
            if sys.stderr.isatty():
                env.setdefault("MERCI_LOG_FORMAT", "console")  # a person reads these, not a collector
            env.update(self.local_env(env))
            os.environ.update(env)
            settings = config.load()
            self._prepare(settings)
            if self.stopping:
                return 0
            py = sys.executable
            self.children = [
                subprocess.Popen([py, "-m", "runtime.cli", "serve", "--port", str(self.port)], env=env),
                subprocess.Popen([py, "-m", "runtime.cli", "worker", "--processes", "1", "--threads", "4"], env=env),
                subprocess.Popen([py, "-m", "runtime.cli", "scheduler"], env=env),
            ]
            print(f"\nMerci is running:\n  GraphQL + GraphiQL  http://127.0.0.1:{self.port}/graphql\n"
                  f"  directory           http://127.0.0.1:{self.port}/directory\n"
                  f"  health              http://127.0.0.1:{self.port}/healthz\n"
                  f"  worker metrics      http://127.0.0.1:{env['dramatiq_prom_port']}/metrics\n"
                  f"  demo logins         dave@merci.test / merci-demo-password (supporter),\n"
                  f"                      admin@merci.test / merci-demo-password (platform admin)\n"
                  f"Stop with Ctrl-C.\n", flush=True)
            while not self.stopping:
                if any(c.poll() is not None for c in self.children):
                    print("a Merci process exited; stopping", file=sys.stderr, flush=True)
                    return 1
                time.sleep(0.2)
            return 0
        finally:
            self._stop_children()
            if embedded is not None:
                embedded.stop()

    def local_env(self, env: dict[str, str]) -> dict[str, str]:
        """What one machine's run needs, unless the environment says otherwise: links and
        buttons name this run's port (MERCI_PUBLIC_URL); sites served on this machine can be
        verified (MERCI_FETCH_ALLOW_LOOPBACK: the SSRF guard refuses loopback addresses
        elsewhere); the workers' metrics take the next port and a folder of this run's own,
        so two runs on one machine do not collide."""
        return {
            "MERCI_PUBLIC_URL": env.get("MERCI_PUBLIC_URL") or f"http://127.0.0.1:{self.port}",
            "MERCI_FETCH_ALLOW_LOOPBACK": env.get("MERCI_FETCH_ALLOW_LOOPBACK", "1"),
            "dramatiq_prom_port": env.get("dramatiq_prom_port") or str(self.port + 1),
            "dramatiq_prom_db": env.get("dramatiq_prom_db") or str((self.data_dir / "prometheus").resolve()),
        }

    def _prepare(self, settings: config.Settings) -> None:
        from merci.db import migrate
        from runtime import demo

        applied = asyncio.run(migrate(settings.database_url, settings))
        print("migrations applied: " + ", ".join(applied) if applied else "database is up to date", flush=True)
        if self.demo:
            print("demo data loaded" if asyncio.run(demo.load(settings)) else "demo data already present", flush=True)

    def _stop_children(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)  # one SIGTERM: workers finish in-flight work
        deadline = time.monotonic() + 30
        for child in self.children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
