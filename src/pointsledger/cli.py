"""The `pointsledger` command (§11). One cmd_<verb> per command, over the Ledger API.

This first cut has what the README needs to show the core working: info,
ingest (CSV, embedded), balance, history, report liability, verify.
"""

import argparse
import csv
import importlib.resources
import json
import os
import sys
import time

from . import engine as engines, limits, program
from .errors import LedgerError
from .ledger import DEFAULT_PATH, Ledger

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
INGEST_BATCH_DEFAULT = 50_000
SAMPLE_FILE = "sample_purchases.csv"
CSV_COLUMNS = ("order_id", "member_id", "amount_minor", "category", "time_s")


def open_ledger(arguments, *, sync=True):
    """The ledger at --data / POINTSLEDGER_DATA, with the example programme if new."""
    ledger = Ledger(arguments.data, sync=sync)
    if not ledger.store.programs:
        ledger.set_program(dict(program.EXAMPLE_PROGRAM, effective_from=limits.time_s_min))
    return ledger


def cmd_info(arguments):
    info = {
        "version": __import__("pointsledger").__version__,
        "engine": engines.ENGINE,
        "engines_available": sorted(engines.ENGINES),
        "extension_error": str(engines.EXTENSION_IMPORT_ERROR) if engines.EXTENSION_IMPORT_ERROR else None,
        "data": os.path.abspath(arguments.data),
    }
    if os.path.exists(os.path.join(arguments.data, "data.mdb")):
        with Ledger(arguments.data, readonly=True) as ledger:
            info["store_bytes"] = os.path.getsize(os.path.join(arguments.data, "data.mdb"))
            info["journal_entries"] = ledger.last_seq()
            info["programme_versions"] = ledger.get_program().version
    _print(arguments, info)
    return EXIT_OK


def _csv_batches(path, batch_size):
    """(first line number, columns) per batch, streaming the file."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        positions = [header.index(column) for column in CSV_COLUMNS]
        batch, first_line = [], 2
        for row in reader:
            batch.append(row)
            if len(batch) == batch_size:
                yield first_line, _columns(batch, positions)
                first_line += len(batch)
                batch = []
        if batch:
            yield first_line, _columns(batch, positions)


def _columns(rows, positions):
    order_ids, member_ids, amounts, categories, times = [], [], [], [], []
    for row in rows:
        order_ids.append(row[positions[0]])
        member_ids.append(row[positions[1]])
        amounts.append(_integer_or_text(row[positions[2]]))
        categories.append(row[positions[3]])
        times.append(_integer_or_text(row[positions[4]]))
    return order_ids, member_ids, amounts, categories, times


def _integer_or_text(text):
    # A cell that is not an integer stays text, so the ledger refuses it by name.
    try:
        return int(text)
    except ValueError:
        return text


def cmd_ingest(arguments):
    path = arguments.file
    if arguments.sample:
        path = str(importlib.resources.files("pointsledger") / "data" / SAMPLE_FILE)
    if path is None:
        raise _Usage("ingest needs FILE or --sample")
    started = time.perf_counter()
    applied = duplicates = rejected = points = 0
    with open_ledger(arguments, sync=False) as ledger:
        for first_line, columns in _csv_batches(path, arguments.batch_size):
            result = ledger.purchases(*columns)
            applied += result.applied
            duplicates += result.duplicates
            rejected += result.rejected
            points += result.points
            for offset, item in enumerate(result):
                if item.error is not None:
                    print(f"{path}:{first_line + offset}: {item.error}", file=sys.stderr)
    elapsed = time.perf_counter() - started
    _print(arguments, {"file": path, "applied": applied, "duplicates": duplicates,
                       "rejected": rejected, "points": points,
                       "rows_per_s": round((applied + duplicates + rejected) / elapsed) if elapsed else None})
    return EXIT_OK if rejected == 0 else EXIT_REFUSED


def cmd_balance(arguments):
    with open_ledger(arguments) as ledger:
        balance = ledger.balance(arguments.member_id, arguments.as_of)
    _print(arguments, vars(balance))
    return EXIT_OK


def cmd_history(arguments):
    with open_ledger(arguments) as ledger:
        page = ledger.history(arguments.member_id, arguments.limit, arguments.before_seq)
    _print(arguments, {"entries": [vars(entry) for entry in page.entries],
                       "next_before_seq": page.next_before_seq})
    return EXIT_OK


def cmd_report(arguments):
    with open_ledger(arguments) as ledger:
        report = ledger.liability(arguments.as_of)
    fields = dict(vars(report))
    fields["issued"] = report.issued
    if arguments.json:
        print(json.dumps(fields, default=str, sort_keys=True))
        return EXIT_OK
    print(f"liability as of {fields['as_of_s']} ({report.currency}, point value {report.point_value})")
    for name in ("earned", "adjusted_positive", "adjusted_negative", "clawed_back", "redeemed",
                 "expired", "outstanding", "outstanding_value", "expiring_30_days",
                 "expiring_60_days", "expiring_90_days", "overdue"):
        print(f"  {name:<20} {fields[name]:>20}")
    for tier, points in report.outstanding_by_tier.items():
        print(f"  tier {tier:<15} {points:>20}")
    return EXIT_OK


def cmd_verify(arguments):
    with open_ledger(arguments) as ledger:
        report = ledger.verify()
    _print(arguments, {"ok": report.ok, "entries": report.entries, "members": report.members,
                       "problems": report.problems})
    return EXIT_OK if report.ok else EXIT_REFUSED


def _print(arguments, fields):
    if getattr(arguments, "json", False):
        print(json.dumps(fields, default=str, sort_keys=True))
    else:
        for key, value in fields.items():
            print(f"{key}: {value}")


class _Usage(Exception):
    pass


def build_parser():
    parser = argparse.ArgumentParser(prog="pointsledger", description="The loyalty points ledger.")
    parser.add_argument("--data", default=os.environ.get("POINTSLEDGER_DATA", DEFAULT_PATH),
                        help="ledger directory (default ./pointsledger-data or $POINTSLEDGER_DATA)")
    commands = parser.add_subparsers(dest="command", required=True)

    info = commands.add_parser("info", help="version, engine, store", epilog="example: pointsledger info")
    info.add_argument("--json", action="store_true")
    info.set_defaults(run=cmd_info)

    ingest = commands.add_parser("ingest", help="ingest purchases from CSV",
                                 epilog="example: pointsledger ingest purchases.csv")
    ingest.add_argument("file", nargs="?")
    ingest.add_argument("--sample", action="store_true", help="ingest the bundled sample purchases")
    ingest.add_argument("--batch-size", type=int, default=INGEST_BATCH_DEFAULT,
                        choices=range(1, limits.batch_items_max + 1), metavar="N")
    ingest.add_argument("--json", action="store_true")
    ingest.set_defaults(run=cmd_ingest)

    balance = commands.add_parser("balance", help="a member's balance",
                                  epilog="example: pointsledger balance member-001")
    balance.add_argument("member_id")
    balance.add_argument("--as-of", type=int, dest="as_of")
    balance.add_argument("--json", action="store_true")
    balance.set_defaults(run=cmd_balance)

    history = commands.add_parser("history", help="a member's entries, newest first",
                                  epilog="example: pointsledger history member-001 --limit 10")
    history.add_argument("member_id")
    history.add_argument("--limit", type=int, default=20)
    history.add_argument("--before-seq", type=int, dest="before_seq")
    history.add_argument("--json", action="store_true")
    history.set_defaults(run=cmd_history)

    report = commands.add_parser("report", help="reports", epilog="example: pointsledger report liability")
    report.add_argument("name", choices=["liability"])
    report.add_argument("--as-of", type=int, dest="as_of")
    report.add_argument("--json", action="store_true")
    report.set_defaults(run=cmd_report)

    verify = commands.add_parser("verify", help="check every invariant", epilog="example: pointsledger verify")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(run=cmd_verify)
    return parser


def main(argv=None):
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        return arguments.run(arguments)
    except _Usage as error:
        parser.error(str(error))
    except LedgerError as error:
        print(f"pointsledger: {error.code}: {error}", file=sys.stderr)
        return EXIT_REFUSED
