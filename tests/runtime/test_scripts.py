"""README's first command, `./scripts/dev`, as a newcomer runs it: from the project's
virtual environment (made by `./scripts/test` or `./scripts/dev` itself with whatever
`python3` is on the machine: in CI, Debian's own, which refuses `pip install` outside a
virtual environment), it serves Merci with its demo data and stops clean on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import ROOT, need
from tests.runtime.test_dev import _port_pair, wait_ready


def test_scripts_dev_serves_merci_from_the_virtual_environment(tmp_path: Path) -> None:
    venv = ROOT / ".venv"
    need(Path(sys.prefix).resolve() == venv.resolve(),
         "run through ./scripts/test (the tests then run in .venv, which ./scripts/dev reuses)")
    port = _port_pair()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "BROKER_URL", "MERCI_PUBLIC_URL", "VIRTUAL_ENV")}
    env["PATH"] = "/usr/bin:/bin"  # nothing of the test's own environment on the way
    env["MERCI_WORKER_METRICS"] = "0"
    log = tmp_path / "dev.log"
    proc = subprocess.Popen([str(ROOT / "scripts" / "dev"), "--port", str(port), "--data-dir", str(tmp_path / "d")],
                            env=env, cwd=tmp_path, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}/healthz", log, timeout=240)
        answer = httpx.post(f"http://127.0.0.1:{port}/graphql",
                            json={"query": '{ creator(handle: "alice") { handle } }'}).json()
        assert answer["data"] == {"creator": {"handle": "alice"}} and "errors" not in answer
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        assert proc.wait(90) == 0, log.read_text()
