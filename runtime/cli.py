"""The `merci` command: the one place that wires the faces and the workers."""

from __future__ import annotations

import argparse
import asyncio
import difflib
import logging
import socket
import sys
from pathlib import Path

from merci import config, observability

ROOT = Path.cwd()


def _settings() -> config.Settings:
    try:
        s = config.load()
    except RuntimeError as e:  # a setting that cannot hold (MERCI_ENV unknown, no secret key in production)
        sys.exit(f"merci: {e}")
    if not s.database_url:
        sys.exit("merci: set DATABASE_URL (or use `merci dev`, which embeds PostgreSQL)")
    return s


# ---------------------------------------------------------------- commands


def cmd_migrate(args: argparse.Namespace) -> int:
    from merci.db import MigrationChanged, migrate

    try:
        settings = _settings()
        applied = asyncio.run(migrate(settings.database_url, settings))
    except MigrationChanged as e:
        print(f"merci migrate: {e}", file=sys.stderr)
        return 1
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from runtime import demo

    print("demo data loaded" if asyncio.run(demo.load(_settings())) else "demo data already present")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from merci.ratelimit import storage_uri
    from runtime.faces import app

    settings = _settings()
    try:  # production and staging need shared storage for the rate limits (merci.ratelimit)
        storage_uri(settings)
    except RuntimeError as err:
        sys.exit(f"merci serve: {err}")
    _durable_broker(settings, "merci serve")
    observability.configure_tracing(args.face)
    if args.quiet:
        logging.getLogger("merci.http").setLevel(logging.WARNING)  # no access log
    queue = _queue(settings, settings.app_database_url)
    # On SIGTERM uvicorn stops accepting, lets in-flight requests finish for up to
    # --grace seconds (an accepted click is answered only once it is in the broker),
    # then closes. Logging is ours (JSON); the access log comes from graph.http_observability.
    server = uvicorn.Server(uvicorn.Config(
        app(settings, args.face, queue=queue), host=args.host, port=args.port,
        # X-Forwarded-For is the app's to read, from MERCI_TRUSTED_PROXIES only (graph.http).
        log_level="warning" if args.quiet else "info", proxy_headers=False,
        timeout_graceful_shutdown=args.grace, log_config=None, access_log=False,
    ))
    # /metrics on a port of its own (MERCI_METRICS_PORT): a second socket of the same
    # server, which answers /metrics only (graph.http_observability.MetricsPort).
    sockets = None if not settings.metrics_port else [
        server.config.bind_socket(), _listen(args.host, settings.metrics_port)]
    server.run(sockets=sockets)
    queue.close()
    return 0 if server.started else 3  # as uvicorn.run: 3, the app did not start


def _durable_broker(settings: config.Settings, command: str) -> None:
    """In production, a broker that loses messages when it restarts stops the start
    (merci.queue.durability_problem says why)."""
    if not settings.production:
        return
    from merci.queue import durability_problem

    problem = durability_problem(settings.broker_url)
    if problem is not None:
        sys.exit(f"{command}: {problem}")


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sys.exit(f"merci serve: cannot listen for metrics on {host}:{port}: {e}")
    return sock


def _queue(settings: config.Settings, dsn: str):  # type: ignore[no-untyped-def]
    from merci.queue import Queue, make_broker

    # The API sends clicks from its event loop: with the PostgreSQL broker, straight
    # through asyncpg (merci.queue.AsyncPostgresEnqueue) on the broker's database.
    return Queue(make_broker(settings.broker_url, dsn, heartbeat_ttl=settings.broker_heartbeat_ttl),
                 database_url=settings.broker_url or dsn)


def cmd_worker(args: argparse.Namespace) -> int:
    from dramatiq.cli import main as dramatiq_main
    from dramatiq.cli import make_argument_parser

    _durable_broker(_settings(), "merci worker")
    # Dramatiq in this process, so that its main process logs JSON like the workers
    # (each worker process configures itself when it loads `workers`). On SIGTERM the
    # workers stop taking messages and finish the ones in hand.
    argv = ["workers", "--processes", str(args.processes), "--threads", str(args.threads), "--skip-logging"]
    if args.queues:
        argv += ["--queues", *args.queues.split(",")]
    return int(dramatiq_main(make_argument_parser().parse_args(argv)) or 0)


def cmd_scheduler(args: argparse.Namespace) -> int:
    from runtime.scheduler import run

    settings = _settings()
    return asyncio.run(run(settings, _queue(settings, settings.system_database_url),
                           once=args.once, interval=args.interval))


def cmd_schema(args: argparse.Namespace) -> int:
    from runtime.faces import public_sdl, subgraph_sdl

    outputs = [(Path(args.path), public_sdl())]
    # The gateway composes the subgraphs' own SDL (gateway/compose.mjs).
    folder = Path(args.subgraphs)
    if folder.is_dir():
        outputs += [(folder / f"{face}.graphql", subgraph_sdl(face) + "\n") for face in ("api", "directory")]
    if args.action == "export":
        for target, sdl in outputs:
            target.write_text(sdl)
            print(f"wrote {target}")
        return 0
    drifted = 0
    for target, sdl in outputs:
        current = target.read_text() if target.exists() else ""
        if current == sdl:
            print(f"{target} is up to date")
            continue
        drifted = 1
        sys.stdout.writelines(difflib.unified_diff(
            current.splitlines(True), sdl.splitlines(True), str(target), "generated"))
        print(f"\n{target} has drifted from the code: run `merci schema export`", file=sys.stderr)
    return drifted


def cmd_catalogs(args: argparse.Namespace) -> int:
    from runtime import catalogs

    if args.action == "update":
        for path in catalogs.update():
            print(f"updated {path.relative_to(catalogs.ROOT)}")
    found = catalogs.problems()
    for line in found:
        print(line, file=sys.stderr)
    if args.action == "check" and not found:
        print("the catalogs hold every string the code uses, translated")
    return 1 if found and args.action == "check" else 0


def cmd_close_month(args: argparse.Namespace) -> int:
    from runtime.closing import run_close

    period = args.period
    if args.previous:
        from datetime import UTC, datetime

        from merci.periods import months_before, period_of

        period = f"{months_before(period_of(datetime.now(UTC)), 1):%Y-%m}"
    return asyncio.run(run_close(_settings(), period, force=args.force, shards=args.shards,
                                 timeout=args.timeout, inline=args.inline, retry_for=args.retry_for))


def cmd_audit(args: argparse.Namespace) -> int:
    from runtime.closing import run_audit

    return asyncio.run(run_audit(_settings()))


def cmd_sepa(args: argparse.Namespace) -> int:
    from runtime.sepa_cli import run

    return asyncio.run(run(_settings(), args))


def cmd_dev(args: argparse.Namespace) -> int:
    from runtime.dev import DevRuntime

    return DevRuntime(port=args.port, data_dir=Path(args.data_dir), demo=not args.no_demo).run()


# ---------------------------------------------------------------- parser


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="merci", description="Merci: micro-donations, federated GraphQL.")
    sub = p.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run everything locally on an embedded PostgreSQL")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--data-dir", default=".merci")
    dev.add_argument("--no-demo", action="store_true")
    dev.set_defaults(func=cmd_dev)

    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    sub.add_parser("demo", help="load the demo data (once)").set_defaults(func=cmd_demo)

    serve = sub.add_parser("serve", help="serve the GraphQL API over HTTP")
    serve.add_argument("face", nargs="?", choices=["all", "api", "directory"], default="all")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--grace", type=int, default=20, help="seconds to finish requests on SIGTERM")
    serve.add_argument("--quiet", action="store_true")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run a Dramatiq worker")
    worker.add_argument("--queues", default="", help="comma-separated queues (default: all)")
    worker.add_argument("--processes", type=int, default=1)
    worker.add_argument("--threads", type=int, default=4)
    worker.set_defaults(func=cmd_worker)

    sched = sub.add_parser("scheduler", help="enqueue due work (month closes, subscriptions)")
    sched.add_argument("--once", action="store_true")
    sched.add_argument("--interval", type=float, default=30.0)
    sched.set_defaults(func=cmd_scheduler)

    close = sub.add_parser("close-month", help="close a month (exactly-once; safe to re-run)")
    which = close.add_mutually_exclusive_group(required=True)
    which.add_argument("period", nargs="?", help="YYYY-MM")
    which.add_argument("--previous", action="store_true", help="the month before the current one (UTC)")
    close.add_argument("--force", action="store_true", help="close the current month early (not in production)")
    close.add_argument("--shards", type=int, default=16)
    close.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the workers")
    close.add_argument("--inline", action="store_true", help="run the close in this process, not on workers")
    close.add_argument("--retry-for", type=float, default=120.0,
                       help="seconds to keep reconnecting to an unreachable database before exiting 4")
    close.set_defaults(func=cmd_close_month)

    sub.add_parser("audit", help="check the ledger's invariants").set_defaults(func=cmd_audit)

    from runtime.sepa_cli import add_parser as add_sepa

    add_sepa(sub).set_defaults(func=cmd_sepa)

    schema = sub.add_parser("schema", help="export or check schema.graphql")
    schema.add_argument("action", choices=["export", "check"])
    schema.add_argument("--path", default="schema.graphql")
    schema.add_argument("--subgraphs", default="gateway/subgraphs", help="subgraph SDLs for the gateway, if present")
    schema.set_defaults(func=cmd_schema)

    catalogs = sub.add_parser("catalogs", help="update or check the translation catalogs (merci/locale)")
    catalogs.add_argument("action", choices=["update", "check"])
    catalogs.set_defaults(func=cmd_catalogs)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    service = {"serve": getattr(args, "face", "all"), "worker": "worker", "scheduler": "scheduler"}
    observability.configure_logging(service.get(args.command, args.command))
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
