"""`merci dev`: embedded PostgreSQL, demo data, restart without re-seeding, and
nothing left running after SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import ROOT, free_port


def start_dev(data_dir: Path, port: int, log: Path, *, worker_metrics: bool = False) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "BROKER_URL", "MERCI_PUBLIC_URL", "dramatiq_prom_port", "dramatiq_prom_db")}
    env["MERCI_WORKER_METRICS"] = "1" if worker_metrics else "0"
    return subprocess.Popen([sys.executable, "-m", "runtime.cli", "dev", "--port", str(port), "--data-dir",
                             str(data_dir)], env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail("merci dev did not become ready:\n" + log.read_text())


def family(pid: int) -> set[int]:
    parent = psutil.Process(pid)
    return {pid} | {c.pid for c in parent.children(recursive=True)}


def postgres_pids(data_dir: Path) -> set[int]:
    pids = set()
    for p in psutil.process_iter(["name", "cmdline"]):
        if p.info["name"] == "postgres" and any(str(data_dir) in a for a in (p.info["cmdline"] or [])):
            pids.add(p.pid)
    return pids


def stop_and_check(proc: subprocess.Popen[bytes], data_dir: Path) -> None:
    started = family(proc.pid) | postgres_pids(data_dir)
    assert postgres_pids(data_dir), "embedded PostgreSQL should be running"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    time.sleep(0.5)
    left = [p for p in started if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert left == [], f"left running: {left}"


def test_dev_runs_restarts_without_reseeding_and_stops_clean(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    query = {"query": '{ creator(handle: "alice") { handle } sites(first: 10) { edges { node { url } } } }'}

    proc = start_dev(data_dir, port, tmp_path / "dev1.log")
    try:
        wait_ready(proc, base + "/healthz", tmp_path / "dev1.log")
        first = httpx.post(base + "/graphql", json=query).json()["data"]
        assert first["creator"] == {"handle": "alice"}
        assert len(first["sites"]["edges"]) == 3
        login = httpx.post(base + "/graphql", json={"query": 'mutation { logIn(input: {email: "dave@merci.test",'
                                                    ' password: "merci-demo-password"}) { token } }'}).json()
        assert login["data"]["logIn"]["token"]
        stop_and_check(proc, data_dir)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "demo data loaded" in (tmp_path / "dev1.log").read_text()

    proc = start_dev(data_dir, port, tmp_path / "dev2.log")
    try:
        wait_ready(proc, base + "/healthz", tmp_path / "dev2.log")
        again = httpx.post(base + "/graphql", json=query).json()["data"]
        assert again == first  # same data, nothing seeded twice
        stop_and_check(proc, data_dir)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "dev2.log").read_text()
    assert "demo data already present" in log and "database is up to date" in log


def _port_pair() -> int:
    """A free port whose next one is free too (the run's workers' metrics)."""
    import socket

    while True:
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def test_two_runs_on_one_machine_each_name_their_own_port(tmp_path: Path) -> None:
    """Links, buttons and verification proofs name the run's own port, and two runs side by
    side do not collide (each run's workers' metrics on its port + 1)."""
    runs = []
    try:
        for name in ("one", "two"):
            port = _port_pair()
            log = tmp_path / f"{name}.log"
            proc = start_dev(tmp_path / name, port, log, worker_metrics=True)
            runs.append((proc, port, log))
        for proc, port, log in runs:
            base = f"http://127.0.0.1:{port}"
            wait_ready(proc, base + "/healthz", log)
            data = httpx.post(base + "/graphql", json={"query": "{ sites(first: 1) { nodes { buttonUrl } } }"}).json()
            assert data["data"]["sites"]["nodes"][0]["buttonUrl"].startswith(base + "/"), data
            oembed = httpx.get(base + "/oembed", params={"url": "https://alice.example/posts/hello-world",
                                                         "format": "json"})
            assert oembed.status_code == 200 and base + "/" in oembed.text, oembed.text
        for _proc, port, log in runs:
            metrics = httpx.get(f"http://127.0.0.1:{port + 1}/metrics", timeout=10)
            assert metrics.status_code == 200 and "merci_" in metrics.text
            assert "Traceback" not in log.read_text(), log.read_text()
    finally:
        for proc, _, _ in runs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _, _ in runs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
