"""The single-click HTTP path: requests per second of the `flattr` mutation
(authenticated, validated, group-committed to the broker) against a bare
Starlette endpoint on the same uvicorn settings, both loaded by wrk.
Goal: flattr >= 40% of bare.

    python -m bench.flattr_bench [--seconds 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
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
    p99 = re.search(r"99%\s+(\S+)", out)
    return rps, p99.group(1) if p99 else "?"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("install wrk (apt-get install wrk)")
    with server() as url, fresh_database(url) as dsn:
        token = asyncio.run(supporter(dsn))
        tmp = Path(tempfile.mkdtemp())
        script = tmp / "flattr.lua"
        script.write_text(LUA.replace("TOKEN", token))
        env = dict(os.environ, DATABASE_URL=dsn, MERCI_ENV="production", MERCI_SECRET_KEY="bench",
                   MERCI_WORKER_METRICS="0")
        env.pop("BROKER_URL", None)
        results = {}
        for name, argv in {
            "bare Starlette (limit)": [sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--log-level", "warning"],
            "flattr mutation": [sys.executable, "-m", "merci.cli", "serve", "--quiet"],
        }.items():
            port = free_port()
            proc = subprocess.Popen([*argv, "--port", str(port)], env=env)
            try:
                wait_up(f"http://127.0.0.1:{port}/graphql")
                wrk(port, 2, args.connections, script)  # warm-up
                served = psutil.Process(proc.pid)
                before = served.cpu_times()
                rps, p99 = wrk(port, args.seconds, args.connections, script)
                after = served.cpu_times()
                cpu = (after.user + after.system - before.user - before.system) / (rps * args.seconds)
                results[name] = (rps, p99, cpu)
            finally:
                proc.terminate()
                proc.wait(30)
        stored = asyncio.run(_queued(dsn))
        bare, flattr = results["bare Starlette (limit)"], results["flattr mutation"]
        report("flattr HTTP path", [
            ("bare Starlette", f"{bare[0]:,.0f} req/s (p99 {bare[1]}), {bare[2] * 1e6:.0f} µs CPU/request"),
            ("flattr mutation", f"{flattr[0]:,.0f} req/s (p99 {flattr[1]}), {flattr[2] * 1e6:.0f} µs CPU/request"),
            ("clicks queued in the broker", f"{stored:,}"),
            ("ratio flattr / bare", f"{flattr[0] / bare[0]:.0%} (goal >= 40%)"),
        ])


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
