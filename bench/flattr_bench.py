"""The single-click HTTP path: requests per second of the `flattr` mutation
(authenticated, validated, group-committed to the broker) against a bare
Starlette endpoint on the same uvicorn settings, both loaded by wrk, in alternating
rounds (the ratio is the median of each round's flattr over the bare round before it).
Goal: flattr >= 40% of bare.

    python -m bench.flattr_bench [--seconds 10] [--rounds 3] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
import psutil

from bench.common import fresh_database, report, server
from merci import accounts
from merci.budgets import credit_topup
from merci.config import Settings
from merci.db import Scope, set_scope
from merci.money import Money
from merci.payments import Charge

LUA = r"""
local counter = 0
local thread_id = 0
setup = function(thread) thread:set("tid", math.random(1, 1e9)) end
init = function(args) thread_id = tid end
request = function()
  counter = counter + 1
  local key = thread_id .. "-" .. counter
  local body = '{"query":"mutation($i: FlattrInput!) { flattr(input: $i) { click { status } ' ..
               'userErrors { code } } }",' ..
               '"variables":{"i":{"url":"https://bench-' .. key .. '.example/","idempotencyKey":"' .. key .. '"}}}'
  return wrk.format("POST", "/graphql", {["Content-Type"] = "application/json",
                                          ["Authorization"] = "Bearer TOKEN"}, body)
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def supporter(dsn: str) -> str:
    conn = await asyncpg.connect(Settings(database_url=dsn).derived().system_database_url)
    try:
        async with conn.transaction():
            await set_scope(conn, Scope(1))
            sid = await accounts.sign_up(conn, tenant_id=1, email="bench@example.org", password="long enough pw",
                                         handle="bench_fan")
            await accounts.mark_verified(conn, account_id=sid)  # money moves for verified emails only
            await credit_topup(conn, tenant_id=1, account_id=sid, charge=Charge("bench", "1", Money(100_000, "EUR")))
            return await accounts.issue_token(conn, tenant_id=1, account_id=sid, ttl=timedelta(hours=1))
    finally:
        await conn.close()


def wait_up(url: str) -> None:
    for _ in range(300):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not start")


def wrk(port: int, seconds: int, connections: int, script: Path) -> tuple[float, str]:
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
                          f"http://127.0.0.1:{port}/graphql"], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    if "Non-2xx" in out:
        raise RuntimeError(out)
    p99 = re.search(r"^\s*99%\s+(\S+)", out, re.M)  # the latency distribution's line, not a stdev column
    return rps, p99.group(1) if p99 else "?"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10, help="length of each timed round")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds per server, alternating: the machine's speed drifts, a pair of rounds shares it")
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("install wrk (apt-get install wrk)")
    with server() as url, fresh_database(url) as dsn, rate_limit_redis() as (redis_url, redis_pid):
        token = asyncio.run(supporter(dsn))
        tmp = Path(tempfile.mkdtemp())
        script = tmp / "flattr.lua"
        script.write_text(LUA.replace("TOKEN", token))
        env = dict(os.environ, DATABASE_URL=dsn, MERCI_ENV="production", MERCI_SECRET_KEY="bench",
                   MERCI_WORKER_METRICS="0",
                   # Production's storage for the rate limits and query cost (Redis), every
                   # click still counted and charged, with room for one supporter's flood.
                   MERCI_RATE_LIMIT_URL=redis_url,
                   MERCI_RATE_LIMIT_MULTIPLIER="1000000", MERCI_QUERY_COST_BUCKET="1000000000",
                   MERCI_QUERY_COST_RESTORE_RATE="1000000000")
        env.pop("BROKER_URL", None)
        servers = {
            "bare": [sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--log-level", "warning"],
            "flattr": [sys.executable, "-m", "runtime.cli", "serve", "--quiet"],
        }
        procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        rounds: dict[str, list[tuple[float, str, float]]] = {name: [] for name in servers}
        redis_cpu: list[float] = []  # the limits' Redis, per click: part of a click's cost too
        try:
            for name, argv in servers.items():
                port = free_port()
                procs[name] = (subprocess.Popen([*argv, "--port", str(port)], env=env), port)
            for _, port in procs.values():
                wait_up(f"http://127.0.0.1:{port}/graphql")
                wrk(port, 2, args.connections, script)  # warm-up
            # Both servers run throughout; each is loaded in turn, the other idle.
            for _ in range(args.rounds):
                for name, (proc, port) in procs.items():
                    served = psutil.Process(proc.pid)
                    before = served.cpu_times()
                    redis_before = _cpu(redis_pid)
                    rps, p99 = wrk(port, args.seconds, args.connections, script)
                    after = served.cpu_times()
                    cpu = (after.user + after.system - before.user - before.system) / (rps * args.seconds)
                    rounds[name].append((rps, p99, cpu))
                    if name == "flattr" and redis_pid:
                        redis_cpu.append((_cpu(redis_pid) - redis_before) / (rps * args.seconds))
        finally:
            for proc, _ in procs.values():
                proc.terminate()
            for proc, _ in procs.values():
                proc.wait(30)
        stored = asyncio.run(_queued(dsn))
        if stored == 0:  # every answer was a refusal: the figures would measure refusing
            sys.exit("no click reached the broker: the server refused them (see its log above)")

        def line(name: str) -> str:
            rs = rounds[name]
            return (f"{statistics.median(r[0] for r in rs):,.0f} req/s (rounds: "
                    f"{', '.join(f'{r[0]:,.0f}' for r in rs)}; p99 {', '.join(r[1] for r in rs)}), "
                    f"{statistics.median(r[2] for r in rs) * 1e6:.0f} µs CPU/request")

        ratios = [f[0] / b[0] for f, b in zip(rounds["flattr"], rounds["bare"], strict=True)]
        report("flattr HTTP path", [
            ("bare Starlette (limit)", line("bare")),
            ("flattr mutation", line("flattr")),
            ("clicks queued in the broker", f"{stored:,}"),
            ("rate limits' Redis", f"{statistics.median(redis_cpu) * 1e6:.0f} µs CPU/click" if redis_cpu
             else "shared (REDIS_URL): its CPU not measured"),
            ("ratio flattr / bare", f"{statistics.median(ratios):.0%} (goal >= 40%; round by round: "
                                    f"{', '.join(f'{r:.0%}' for r in ratios)})"),
        ])


@contextlib.contextmanager
def rate_limit_redis() -> Iterator[tuple[str, int | None]]:
    """A Redis of the bench's own for the limits' counters (its CPU per click is measured),
    else the machine's (REDIS_URL)."""
    if not shutil.which("redis-server"):
        yield os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), None
        return
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.1):
                break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", proc.pid
    finally:
        proc.terminate()
        proc.wait(30)


def _cpu(pid: int | None) -> float:
    if not pid:
        return 0.0
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def _queued(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(
            "select coalesce(sum(jsonb_array_length(message->'args'->0)), 0) from dramatiq.queue"
            " where queue_name = 'clicks'"))
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
