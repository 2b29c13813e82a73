"""The gateway's cost: a frontend's operation set (tests/gateway/operations, sent as
tests/gateway/frontend.py's scenario sends them: each query, and the mutations a
frontend repeats, by its principal) through Hive Gateway over `merci serve api` and
`merci serve directory`, against the same request sent straight to the subgraph that
serves it all, or to `merci serve all` when it spans both, in one run: p50 and p95 of
each, and the ratio. Goal: through the gateway at most 2x direct at p95, every operation.

The limits measured in the same run: HTTP itself (a bare Starlette endpoint on the
same uvicorn settings, bench/bare_app.py), and the gateway's own floor (`{ __typename }`,
answered by Hive Gateway without asking any subgraph).

    python -m bench.gateway_bench [--runs 200] [--lock /tmp/merci-bench.lock]

DATABASE_URL (a superuser) is used when set, else an embedded PostgreSQL. Node and
gateway/node_modules (npm ci) are needed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pycurl
from graphql import OperationDefinitionNode, OperationType, parse

from bench.common import fresh_database, server
from bench.search_bench import held, pct

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = ROOT / "gateway"
# Mutations a frontend sends again and again, and that answer alike when repeated.
REPEATABLE = {"LogIn", "SetMonthlyBudget", "TopUp", "Flattr", "UpdateWebhookEndpoint"}


class Http:
    """One kept-alive libcurl connection (bench.search_bench.Http, with headers)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.curl = pycurl.Curl()
        self.curl.setopt(pycurl.TCP_NODELAY, 1)
        self.curl.setopt(pycurl.TIMEOUT, 30)
        self.curl.setopt(pycurl.URL, url)

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        out = io.BytesIO()
        self.curl.setopt(pycurl.POSTFIELDS, body)
        self.curl.setopt(pycurl.HTTPHEADER, ["content-type: application/json", "Expect:",
                                             *(f"{k}: {v}" for k, v in headers.items())])
        self.curl.setopt(pycurl.WRITEDATA, out)
        self.curl.perform()
        return self.curl.getinfo(pycurl.RESPONSE_CODE), out.getvalue()

    def close(self) -> None:
        self.curl.close()


@contextmanager
def processes(dsn: str) -> Iterator[dict[str, str]]:
    """merci serve all, api and directory, Hive Gateway over the last two, and the bare
    endpoint; their GraphQL URLs by name."""
    from tests.conftest import free_port

    env = {**os.environ, "DATABASE_URL": dsn, "MERCI_ENV": "test", "MERCI_PUBLIC_URL": "https://merci.test",
           "MERCI_WORKER_METRICS": "0", "PYTHONUNBUFFERED": "1"}
    env.pop("BROKER_URL", None)
    ports = {name: free_port() for name in ("all", "api", "directory", "gateway", "bare")}
    logs = Path(tempfile.mkdtemp(prefix="merci-gateway-bench-"))  # their logs (the probes below make some lines)
    print(f"logs in {logs}")
    procs = [subprocess.Popen([sys.executable, "-m", "merci.cli", "serve", face, "--port", str(ports[face]), "--quiet"],
                              env=env, cwd=ROOT, stdout=log(logs, face), stderr=subprocess.STDOUT)
             for face in ("all", "api", "directory")]
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--port", str(ports["bare"]), "--log-level", "warning"],
        env=env, cwd=ROOT, stdout=log(logs, "bare"), stderr=subprocess.STDOUT))
    urls = {face: f"http://127.0.0.1:{ports[face]}/graphql" for face in ("all", "api", "directory", "bare")}
    procs.append(subprocess.Popen(
        [str(GATEWAY / "node_modules" / ".bin" / "hive-gateway"), "supergraph", "--host", "127.0.0.1"],
        env={**env, "PORT": str(ports["gateway"]), "MERCI_API_URL": urls["api"],
             "MERCI_DIRECTORY_URL": urls["directory"]}, cwd=GATEWAY, stdout=log(logs, "gateway"),
        stderr=subprocess.STDOUT))
    urls["gateway"] = f"http://127.0.0.1:{ports['gateway']}/graphql"
    try:
        for url in urls.values():
            wait(url, procs)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)


def log(folder: Path, name: str) -> IO[bytes]:
    return (folder / f"{name}.log").open("wb")


def wait(url: str, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 60
    client = Http(url)
    try:
        while True:
            try:
                if client.post(b'{"query": "{ __typename }"}', {})[0] == 200:
                    return
            except pycurl.error:
                pass
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"{url} did not start")
            time.sleep(0.2)
    finally:
        client.close()


def operation_set(run: Any) -> list[tuple[str, str, bytes, dict[str, str]]]:
    """(name, who, request body, headers): the scenario's queries and repeatable mutations,
    each the first time it is sent by a principal that gets data, no error."""
    from tests.gateway.frontend import SCENARIO

    seen, out = set(), []
    docs = run.docs
    for step in SCENARIO:
        if step.document is not None or step.method != "POST" or step.single_process_only or step.headers:
            continue
        definition = next(d for d in parse(docs[step.operation]).definitions if isinstance(d, OperationDefinitionNode))
        if definition.operation is OperationType.MUTATION and step.operation not in REPEATABLE:
            continue
        if (step.operation, step.by) in seen or step.by in ("bad", "old") or "@no-such" in step.by:
            continue
        variables = step.variables(run.kept) if callable(step.variables) else step.variables
        body = json.dumps({"query": docs[step.operation], "variables": variables}).encode()
        out.append((step.operation, step.by, body, run.headers(step.by)))
        seen.add((step.operation, step.by))
    return out


def direct_target(urls: dict[str, str], body: bytes, headers: dict[str, str]) -> str:
    """The subgraph that serves the whole operation alone, else `all` (it spans both)."""
    for face in ("api", "directory"):
        client = Http(urls[face])
        try:
            status, answer = client.post(body, headers)
        finally:
            client.close()
        errors = json.loads(answer).get("errors") or []
        if status == 200 and not any((e.get("extensions") or {}).get("code") == "GRAPHQL_VALIDATION_FAILED"
                                     for e in errors):
            return face
    return "all"


def timed(client: Http, body: bytes, headers: dict[str, str]) -> tuple[float, bytes]:
    started = time.perf_counter()
    status, answer = client.post(body, headers)
    elapsed = time.perf_counter() - started
    if status != 200:
        raise RuntimeError(f"{status}: {answer[:300]!r}")
    return elapsed, answer


def measure(dsn: str, runs: int, lock: str | None) -> int:
    from tests.gateway.frontend import SCENARIO, Run, Step, login

    with processes(dsn) as urls:
        run = Run(urls["all"], dsn)
        run.replay(SCENARIO)  # the world the operations read: people, sites, things, keys, hooks
        for handle, who in (("olga", "root"), ("erin", "erin")):  # logged out at the scenario's end
            run.step(Step("LogIn", variables=login(handle), token_for=who, cookie_for=who))
        ops = operation_set(run)
        clients = {name: Http(url) for name, url in urls.items()}
        rows = []
        try:
            with held(lock):
                floors = {}
                for name in ("bare", "gateway", "api"):
                    samples = [timed(clients[name], b'{"query": "{ __typename }"}', {})[0] for _ in range(runs + 5)]
                    floors[name] = (pct(samples[5:], .5), pct(samples[5:], .95))
                for name, who, body, headers in ops:
                    target = direct_target(urls, body, headers)
                    direct: list[float] = []
                    through: list[float] = []
                    for i in range(runs + 5):  # interleaved, so that a slow moment hits both; 5 to warm up
                        d, a = timed(clients[target], body, headers)
                        g, b = timed(clients["gateway"], body, headers)
                        if i >= 5:
                            direct.append(d)
                            through.append(g)
                    if "errors" in json.loads(a) or "errors" in json.loads(b):
                        raise RuntimeError(f"{name} by {who}: {a[:300]!r} / {b[:300]!r}")
                    rows.append((f"{name} ({who})", target, pct(direct, .5), pct(direct, .95), pct(through, .5),
                                 pct(through, .95)))
        finally:
            for client in clients.values():
                client.close()

    print(f"\n== the frontend's operations through Hive Gateway and direct, {runs} runs each (ms) ==")
    print(f"{'operation (by)':36} {'direct to':>9} {'p50':>7} {'p95':>7} {'gw p50':>7} {'gw p95':>7} {'p95 ratio':>9}")
    for label, target, d50, d95, g50, g95 in rows:
        flag = "" if g95 <= 2 * d95 else "  *"
        print(f"{label:36} {target:>9} {d50:7.2f} {d95:7.2f} {g50:7.2f} {g95:7.2f} {g95 / d95:9.2f}{flag}")
    ratios = [r[5] / r[3] for r in rows]
    print(f"\np95 through the gateway ≤ 2x direct in {sum(r <= 2 for r in ratios)}/{len(rows)} operations "
          f"(ratio median {statistics.median(ratios):.2f}, best {min(ratios):.2f}, worst {max(ratios):.2f}); "
          f"added at p50: median {statistics.median(r[4] - r[2] for r in rows):.2f} ms")
    print("(* misses the goal: p95 through the gateway above 2x direct)")
    print(f"limits in this run: HTTP alone (bare Starlette endpoint) p50 {floors['bare'][0]:.2f} ms, "
          f"p95 {floors['bare'][1]:.2f} ms; {{ __typename }} answered by a subgraph p50 {floors['api'][0]:.2f}, "
          f"p95 {floors['api'][1]:.2f}; by Hive Gateway alone (no subgraph) p50 {floors['gateway'][0]:.2f}, "
          f"p95 {floors['gateway'][1]:.2f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="timed runs per operation and path")
    parser.add_argument("--lock", metavar="PATH", help="hold an exclusive flock on PATH while measuring, "
                                                       "e.g. /tmp/merci-bench.lock")
    args = parser.parse_args()
    with server() as url, fresh_database(url, prefix="merci_gateway_bench") as dsn:
        return measure(dsn, args.runs, args.lock)


if __name__ == "__main__":
    sys.exit(main())
