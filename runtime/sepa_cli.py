"""`merci sepa`: the operator's side of SEPA payouts (merci.sepa).

  merci sepa batch [--date YYYY-MM-DD] [--out FILE]   write a pain.001 of the pending
                                                      `sepa` payouts; upload it to the bank
  merci sepa confirm ID                               the bank took batch ID: its payouts sent
  merci sepa cancel ID                                the bank refused it: its payouts wait
  merci sepa show ID [--out FILE]                     the batch's pain.001 again
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg

from merci import sepa
from merci.config import Settings
from merci.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p: argparse.ArgumentParser = sub.add_parser(
        "sepa", help="SEPA payout batches: write a pain.001, confirm or cancel it")
    actions = p.add_subparsers(dest="action", required=True)
    batch = actions.add_parser("batch", help="write a pain.001 of the pending SEPA payouts")
    batch.add_argument("--date", help="the requested execution date (default: the next business day)")
    batch.add_argument("--out", help="write the file here (default: stdout)")
    for name, text in (("confirm", "the bank took the batch: mark its payouts sent"),
                       ("cancel", "the bank refused the batch: its payouts wait for the next"),
                       ("show", "print the batch's pain.001 again")):
        one = actions.add_parser(name, help=text)
        one.add_argument("batch_id", type=int)
        if name == "show":
            one.add_argument("--out")
    return p


def _next_business_day(today: date) -> date:
    day = today + timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def _write(xml: str, out: str | None) -> None:
    if out:
        Path(out).write_text(xml)
    else:
        sys.stdout.write(xml)


async def run(settings: Settings, args: argparse.Namespace) -> int:
    conn = await asyncpg.connect(settings.system_database_url)
    try:
        if args.action == "batch":
            when = date.fromisoformat(args.date) if args.date else _next_business_day(datetime.now(UTC).date())
            batch_id = await sepa.batch(conn, settings, execution=when)
            if batch_id is None:
                print("no pending SEPA payouts", file=sys.stderr)
                return 0
            row = await conn.fetchrow("select payouts, total, xml from sepa_batches where id = $1", batch_id)
            _write(row["xml"], args.out)
            print(f"batch {batch_id}: {row['payouts']} payouts, {row['total'] / 100:.2f} {settings.currency};"
                  f" once the bank has taken it: merci sepa confirm {batch_id}", file=sys.stderr)
        elif args.action == "confirm":
            counts = await sepa.confirm(conn, batch_id=args.batch_id)
            print(f"batch {args.batch_id} confirmed: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
        elif args.action == "cancel":
            await sepa.cancel(conn, batch_id=args.batch_id)
            print(f"batch {args.batch_id} cancelled: its payouts go into the next batch")
        else:
            xml = await conn.fetchval("select xml from sepa_batches where id = $1", args.batch_id)
            if xml is None:
                raise UserError("NOT_FOUND", f"no batch {args.batch_id}")
            _write(xml, args.out)
    except UserError as err:
        print(f"merci sepa: {err.message}", file=sys.stderr)
        return 2
    finally:
        await conn.close()
    return 0
