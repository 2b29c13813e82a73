"""Mixed traffic under attack (issue 16), with locust, on loopback: 2 API processes
(`merci serve all`, production settings, rate limits and query cost in Redis) and 2
workers on one database. Honest users (bench/locustfile.py: clicks, dashboards, directory
searches, a partner's bulk registrations, each user from its own address) run alone for a
baseline, then with an attacker flooding logIn with wrong passwords from one address.

Goals: no 5xx anywhere; the honest traffic's p99 under attack within 2x its p99 without
(per kind of request); memory flat (each process's RSS in the last minute against the
first minute under attack); every click answered PENDING stored once the queue drains.
The limit measured in the same run is the baseline itself: the same users, the same
processes, no attacker.

    python -m bench.load_test [--minutes 5] [--baseline-minutes 2] [--users 24] [--attackers 4]

DATABASE_URL (a superuser) is used when set, else an embedded PostgreSQL; Redis at
REDIS_URL (default redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from bench.common import fresh_database, report, server
from merci import accounts, tenants
from merci.budgets import credit_topup
from merci.config import Settings
from merci.db import Scope, set_scope
from merci.ids import to_global
from merci.money import Money
from merci.payments import Charge
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
HONEST = ("click", "dashboard", "search", "partner bulk")


async def seed(dsn: str, users: int) -> dict[str, Any]:
    """Supporters with funds and a budget (a token each), creators with a verified, listed
    site, 300 more listed sites to search, and a partner's API key (things:write)."""
    conn = await asyncpg.connect(Settings(database_url=dsn).derived().system_database_url)
    try:
        async with conn.transaction():
            await set_scope(conn, Scope(1))
            hashed = await accounts.hash_password("long enough password")

            async def person(handle: str) -> int:
                pk = await accounts.sign_up(conn, tenant_id=1, email=f"{handle}@load.example",
                                            password="long enough password",
                                            handle=handle, password_hash=hashed)
                await accounts.mark_verified(conn, account_id=pk)
                return pk

            tokens = []
            for i in range(users):
                pk = await person(f"fan_{i}")
                await credit_topup(conn, tenant_id=1, account_id=pk,
                                   charge=Charge("load", str(i), Money(100_000, "EUR")))
                await conn.execute("insert into budget_changes (tenant_id, account_id, amount, currency)"
                                   " values (1, $1, 1000, 'EUR')", pk)
                tokens.append(await accounts.issue_token(conn, tenant_id=1, account_id=pk, ttl=timedelta(hours=3)))
            creators = []
            for i in range(6):
                pk = await person(f"maker_{i}")
                site = f"https://maker-{i}.load.example/"
                await conn.execute(
                    "insert into sites (tenant_id, owner_id, url, host, verification_token, verified_at,"
                    " verification_method, listed, listed_at, title, description, language, category)"
                    " values (1, $1, $2, $3, 'tok', now(), 'well_known', true, now(), $4, $5, 'en', 'text')",
                    pk, site, site.split("/")[2], f"Maker {i}", "Essays on zither music, tea and garden bread")
                creators.append({"id": to_global("Account", pk), "site": site})
            await conn.execute(
                "insert into sites (tenant_id, owner_id, url, host, verification_token, verified_at,"
                " verification_method, listed, listed_at, title, description, language, category)"
                " select 1, $1, 'https://s' || g || '.load.example/', 's' || g || '.load.example', 'tok', now(),"
                " 'well_known', true, now(), 'Site ' || g, (array['zither tea', 'garden recipes', 'photos music',"
                " 'essays bread', 'cycling poems'])[1 + g % 5] || ' and more words here', 'en', 'text'"
                " from generate_series(1, 300) g",
                await conn.fetchval("select id from accounts where handle = 'maker_0'"))
            admin = await person("partner_admin")
            await conn.execute("update account_private set is_tenant_admin = true where account_id = $1", admin)
            _, key = await tenants.create_api_key(conn, tenant_id=1, name="partner", scopes=["read", "things:write"],
                                                  created_by=admin)
        return {"tokens": tokens, "creators": creators, "sites": [c["site"] for c in creators],
                "partner_key": key, "victim": "fan_0@load.example"}
    finally:
        await conn.close()


class Memory(threading.Thread):
    """Each process's RSS (with its children: Dramatiq's worker processes) every 5 s."""

    def __init__(self, procs: dict[str, subprocess.Popen[bytes]]) -> None:
        super().__init__(daemon=True)
        self.procs, self.phase = procs, "start"
        self.samples: list[tuple[float, str, str, int]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(5):
            for name, proc in self.procs.items():
                p = psutil.Process(proc.pid)
                rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
                self.samples.append((time.monotonic(), self.phase, name, rss))


def locust(classes: list[str], users: int, seconds: int, csv_prefix: Path, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "locustfile.py"), "--headless",
                    "-u", str(users), "-r", str(max(users // 4, 1)), "-t", f"{seconds}s", "--csv", str(csv_prefix),
                    "--only-summary", "--loglevel", "WARNING", *classes], env=env, check=False, cwd=ROOT)


def stats(csv_prefix: Path) -> dict[str, dict[str, str]]:
    with open(f"{csv_prefix}_stats.csv") as f:
        return {row["Name"]: row for row in csv.DictReader(f)}


def failures(csv_prefix: Path) -> list[dict[str, str]]:
    path = Path(f"{csv_prefix}_failures.csv")
    return list(csv.DictReader(path.open())) if path.exists() else []


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=5.0, help="length of the attack")
    ap.add_argument("--baseline-minutes", type=float, default=2.0)
    ap.add_argument("--users", type=int, default=24, help="honest users")
    ap.add_argument("--attackers", type=int, default=4)
    ap.add_argument("--attack-rate", type=float, default=25.0, help="logIn guesses a second, per attacker")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="merci-load-"))
    with server() as url, fresh_database(url, "merci_load") as dsn:
        world = asyncio.run(seed(dsn, args.users))
        (tmp / "world.json").write_text(json.dumps(world))
        env = dict(os.environ, DATABASE_URL=dsn, MERCI_ENV="production", MERCI_SECRET_KEY="load-test",
                   MERCI_WORKER_METRICS="0", MERCI_TRUSTED_PROXIES="127.0.0.1", PYTHONUNBUFFERED="1",
                   MERCI_RATE_LIMIT_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
        env.pop("BROKER_URL", None)  # the PostgreSQL broker
        ports = [free_port(), free_port()]
        procs: dict[str, subprocess.Popen[bytes]] = {}
        logs = {name: (tmp / f"{name}.log").open("wb") for name in ("api-1", "api-2", "worker-1", "worker-2")}
        try:
            for i, port in enumerate(ports, 1):
                procs[f"api-{i}"] = subprocess.Popen(
                    [sys.executable, "-m", "runtime.cli", "serve", "all", "--port", str(port), "--quiet"],
                    env=env, stdout=logs[f"api-{i}"], stderr=subprocess.STDOUT, cwd=ROOT)
            for i in (1, 2):
                procs[f"worker-{i}"] = subprocess.Popen(
                    [sys.executable, "-m", "runtime.cli", "worker", "--processes", "1", "--threads", "2"],
                    env=env, stdout=logs[f"worker-{i}"], stderr=subprocess.STDOUT, cwd=ROOT)
            hosts = [f"http://127.0.0.1:{p}" for p in ports]
            for host in hosts:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if httpx.get(host + "/healthz", timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        sys.exit(f"the API at {host} did not start: see {tmp}")
                    time.sleep(0.3)
            load_env = dict(env, MERCI_LOAD_WORLD=str(tmp / "world.json"), MERCI_LOAD_HOSTS=",".join(hosts),
                            MERCI_LOAD_ATTACKERS=str(args.attackers), MERCI_LOAD_ATTACK_RATE=str(args.attack_rate),
                            MERCI_LOAD_PENDING=str(tmp / "pending.txt"))
            memory = Memory(procs)
            memory.start()
            memory.phase = "baseline"
            locust(["Honest"], args.users, int(args.baseline_minutes * 60), tmp / "baseline", load_env)
            memory.phase = "attack"
            attack_started = time.monotonic()
            locust(["Honest", "Attacker"], args.users + args.attackers, int(args.minutes * 60), tmp / "attack",
                   load_env)
            memory.stopping.set()
            accepted = asyncio.run(drain(dsn))
        finally:
            for proc in procs.values():
                proc.terminate()
            for proc in procs.values():
                proc.wait(60)
        base, attack = stats(tmp / "baseline"), stats(tmp / "attack")
        rows = []
        worst = 0.0
        for name in HONEST:
            b, a = base.get(name), attack.get(name)
            if not b or not a:
                rows.append((name, "no requests"))
                continue
            ratio = float(a["99%"]) / max(float(b["99%"]), 1.0)
            worst = max(worst, ratio)
            rows.append((name, f"p99 {b['99%']} ms alone, {a['99%']} ms under attack ({ratio:.2f}x); p50 {b['50%']}"
                               f" -> {a['50%']} ms; {a['Request Count']} requests, {a['Failure Count']} failed"))
        guesses = attack.get("attack: logIn", {})
        fivexx = [f for f in failures(tmp / "baseline") + failures(tmp / "attack") if f["Error"].startswith("5")]
        other = [f for f in failures(tmp / "baseline") + failures(tmp / "attack") if not f["Error"].startswith("5")]
        rows.append(("attacker's logIn guesses", f"{guesses.get('Request Count', 0)} sent "
                                                 f"({float(guesses.get('Requests/s', 0)):.0f}/s), answered in p50 "
                                                 f"{guesses.get('50%', '?')} ms"))
        rows.append(("5xx answers", str(sum(int(f["Occurrences"]) for f in fivexx))))
        rows.append(("other failures", "; ".join(f"{f['Name']}: {f['Error'][:80]} x{f['Occurrences']}"
                                                 for f in other) or "none"))
        under_attack = [s for s in memory.samples if s[1] == "attack"]
        for name in procs:
            mine = [(t - attack_started, rss) for t, phase, n, rss in under_attack if n == name]
            first = [rss for t, rss in mine if t < 60]
            last = [rss for t, rss in mine if t > mine[-1][0] - 60] if mine else []
            if first and last:
                growth = statistics.mean(last) / statistics.mean(first) - 1
                rows.append((f"memory {name}", f"{statistics.mean(first) / 2**20:.0f} MB in the first minute,"
                                               f" {statistics.mean(last) / 2**20:.0f} MB in the last ({growth:+.1%})"))
        pending = sum(int(line) for line in (tmp / "pending.txt").read_text().split())
        rows.append(("clicks answered PENDING / stored", f"{pending} / {accepted}"
                                                         f"{'' if pending == accepted else '  LOST OR EXTRA'}"))
        rows.append(("honest p99 under attack / alone, worst kind", f"{worst:.2f}x (goal <= 2x)"))
        report(f"load test: {args.users} honest users on 2 APIs and 2 workers, {args.baseline_minutes:g} min alone,"
               f" {args.minutes:g} min with {args.attackers} attackers at {args.attack_rate:g}/s each"
               f" (logs in {tmp})", rows)


async def drain(dsn: str) -> int:
    """Clicks stored once the broker's click queue is empty."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and await conn.fetchval(
                "select count(*) from dramatiq.queue where queue_name = 'clicks' and state = 'queued'"):
            await asyncio.sleep(1)
        return int(await conn.fetchval("select count(*) from clicks where source = 'click'"))
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
