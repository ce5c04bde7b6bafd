"""The `pointsledger` command (SPEC §11): one cmd_<verb> per command, over the Ledger API.

Conventions, for every command:
- `--data DIR` (or POINTSLEDGER_DATA) picks the ledger, default ./pointsledger-data;
  commands that write create it with the example programme when it is new.
- `--help` shows an example; `--json` prints one JSON document for scripts.
- Exit status: 0 success, 1 refused or failed (a LedgerError, an unreadable
  file, rows rejected by ingest, problems found by verify), 2 bad usage.
- Errors go to stderr in one line that names the problem.
"""

import argparse
import csv
import importlib.resources
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import lmdb

from . import calendar, engine as engines, limits, program
from .errors import AlreadyExists, InvalidProgram, LedgerError, NotFound
from .ledger import DEFAULT_PATH, Ledger, open_with_example_program

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130
SAMPLES = {"csv": "sample_purchases.csv", "parquet": "sample_purchases.parquet"}
DATA_ENVIRONMENT = "POINTSLEDGER_DATA"
# Test hook: seconds to pause after each committed ingest batch (interruption tests).
INGEST_DELAY_ENVIRONMENT = "POINTSLEDGER_INGEST_DELAY_S"
SERVE_ADDRESS_DEFAULT = "127.0.0.1:50051"
EXPORT_CHUNK_ENTRIES = 50_000
INGEST_WINDOW_DEFAULT = 4
BENCH_COUNT_DEFAULT = 200_000
BENCH_COUNT_MAX = 100_000_000
HISTORY_LIMIT_DEFAULT = 20
# The importer (pyarrow, numpy) is imported by the commands that use it only: the
# others start in a fraction of the time. Its defaults are repeated here for --help.
INGEST_BATCH_ROWS_DEFAULT = 50_000
SORT_RUN_ROWS_DEFAULT = 1_000_000
JOURNAL_FIELDS = ("seq", "kind", "member_id", "ref_id", "points", "balance", "time_s", "program_version")

assert EXPORT_CHUNK_ENTRIES <= limits.journal_limit_max
assert HISTORY_LIMIT_DEFAULT <= limits.history_limit_max


class Usage(Exception):
    """Bad usage found after parsing (exit status 2)."""


# --- arguments -----------------------------------------------------------------------------


def time_argument(text):
    """Unix seconds, ISO 8601 UTC (2026-03-15T00:00:00Z), a date (2026-03-15, midnight UTC) or "now"."""
    given = text.strip()
    if given == "now":
        return int(time.time())
    if re.fullmatch(r"-?[0-9]+", given):
        return int(given)
    parsed = calendar.parse_utc(given + "T00:00:00Z" if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", given) else given)
    if parsed is None:
        raise argparse.ArgumentTypeError(
            f"{given!r} is not a time: give Unix seconds, 2026-03-15T00:00:00Z, 2026-03-15 or now"
        )
    return parsed


def integer_argument(low, high):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low:,} and {high:,}")
        return value

    return parse


def positive_seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 86_400:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 86400 seconds")
    return value


def data_directory(arguments):
    return arguments.data


# --- opening the ledger ---------------------------------------------------------------------


def open_ledger(arguments, *, sync=True):
    """The ledger at --data, created with the example programme when it is new."""
    return open_with_example_program(data_directory(arguments), sync=sync)


def store_exists(path):
    return os.path.exists(os.path.join(path, "data.mdb"))


def open_existing(arguments):
    """The ledger at --data, read-only; refused when there is none (reads never create one)."""
    path = data_directory(arguments)
    if not store_exists(path):
        raise NotFound(f"no ledger at {os.path.abspath(path)} (`pointsledger ingest` or `serve` creates one)")
    return Ledger(path, readonly=True)


# --- output ------------------------------------------------------------------------------------


def print_json(value):
    print(json.dumps(value, default=str, sort_keys=True))


def print_fields(fields, times=()):
    """Aligned `name  value` lines; integer fields named in `times` also shown as UTC."""
    width = max(len(name) for name in fields)
    for name, value in fields.items():
        if isinstance(value, int) and not isinstance(value, bool):
            shown = str(value) if name.endswith(PLAIN_NUMBER_SUFFIXES) else f"{value:,}"
            if name in times:
                shown = f"{value} ({format_time(value)})"
        else:
            shown = "-" if value is None else str(value)
        print(f"{name:<{width}}  {shown}")


PLAIN_NUMBER_SUFFIXES = ("_year", "version", "seq", "_s")


def format_time(time_s):
    if time_s is None:
        return "-"
    if time_s == limits.never_expires_s:
        return "never"
    return calendar.format_utc(time_s)


def emit(arguments, fields, times=()):
    if getattr(arguments, "json", False):
        print_json(fields)
    else:
        print_fields(fields, times)


# --- commands ------------------------------------------------------------------------------------


def cmd_info(arguments):
    import pointsledger

    path = data_directory(arguments)
    info = {
        "version": pointsledger.__version__,
        "engine": engines.ENGINE,
        "engines_available": ", ".join(sorted(engines.ENGINES)),
        "extension_error": str(engines.EXTENSION_IMPORT_ERROR) if engines.EXTENSION_IMPORT_ERROR else None,
        "data": os.path.abspath(path),
        "store_exists": store_exists(path),
    }
    if info["store_exists"]:
        with Ledger(path, readonly=True) as ledger:
            info.update(store_counts(ledger))
    emit(arguments, info)
    return EXIT_OK


def store_counts(ledger):
    """Sizes and counts read from the store's own statistics (no scan)."""
    from . import store_format as fmt

    data_file = os.path.join(ledger.path, "data.mdb")
    status = os.stat(data_file)
    store = ledger.store
    with store.read() as txn:
        def entries(name):
            return txn.stat(store.dbs[name])["entries"]

        counts = {
            "store_bytes": status.st_size,
            "store_bytes_on_disk": status.st_blocks * 512,
            "map_bytes": store.env.info()["map_size"],
            "journal_entries": store.last_seq(txn),
            "members": entries(fmt.DB_MEMBERS),
            "orders": entries(fmt.DB_ORDERS),
            "refunds": entries(fmt.DB_REFUNDS),
            "redemptions": entries(fmt.DB_REDEMPTIONS),
            "adjustments": entries(fmt.DB_ADJUSTMENTS),
            "programme_versions": store.program_versions(txn),
        }
    return counts


def cmd_ingest(arguments):
    from . import importer

    path, file_format = ingest_input(arguments)
    source = importer.open_source(path, file_format)
    delay_s = float(os.environ.get(INGEST_DELAY_ENVIRONMENT, "0") or 0)
    options = importer.Options(
        batch_rows=arguments.batch_size, rejects_path=arguments.rejects, sort=arguments.sort,
        sort_run_rows=arguments.sort_run_rows, scratch_directory=arguments.scratch_dir,
        progress="none" if arguments.quiet else arguments.progress,
        progress_interval_s=arguments.progress_interval, delay_s=delay_s,
    )
    if arguments.server:
        summary = ingest_through_server(arguments, source, options)
    else:
        with open_ledger(arguments, sync=False) as ledger:
            sink = importer.EmbeddedSink(ledger)
            options.resume_path = resume_path(arguments, path, sink.target, ledger.path)
            summary = importer.Ingest(source, sink, options).run()
    report_ingest(arguments, summary)
    return EXIT_OK if summary.rejected == 0 else EXIT_REFUSED


def ingest_input(arguments):
    if arguments.sample and arguments.file:
        raise Usage("give FILE or --sample, not both")
    if arguments.sample:
        resource = importlib.resources.files("pointsledger") / "data" / SAMPLES[arguments.sample]
        return str(resource), arguments.sample
    if not arguments.file:
        raise Usage("ingest needs FILE (or --sample)")
    return arguments.file, arguments.format


def resume_path(arguments, path, target, data_path=None):
    from . import importer

    if arguments.no_resume:
        return None
    if arguments.resume_file:
        return arguments.resume_file
    return importer.default_resume_path(path, target, data_path)


def ingest_through_server(arguments, source, options):
    from . import importer
    from .client import LedgerClient

    client = LedgerClient(arguments.server, token=read_token(arguments), tls_ca=arguments.tls_ca)
    try:
        sink = importer.ServerSink(client, arguments.server, arguments.window)
        options.resume_path = resume_path(arguments, source.path, sink.target)
        return importer.Ingest(source, sink, options).run()
    finally:
        close = getattr(client, "close", None)
        if close is not None:
            close()


def read_token(arguments):
    if arguments.token_file:
        with open(arguments.token_file, encoding="utf-8") as handle:
            return handle.read().strip()
    return arguments.token or os.environ.get("POINTSLEDGER_TOKEN") or None


def report_ingest(arguments, summary):
    if arguments.json:
        print_json(summary.as_dict())
        return
    text = (f"{os.path.basename(summary.file)}: {plural(summary.rows, 'row')}: {summary.applied:,} applied, "
            f"{summary.duplicates:,} duplicates, {summary.rejected:,} rejected, {summary.points:,} points; "
            f"{plural(summary.rows_this_run, 'row')} in {summary.seconds:,.1f} s "
            f"({summary.rows_per_s:,.0f} rows/s)")
    if summary.resumed_from_line:
        text += f"; resumed at line {summary.resumed_from_line:,}"
    elif summary.resumed_after_rows:
        text += f"; resumed after {plural(summary.resumed_after_rows, 'row')}"
    print(text)
    if summary.rejects_file:
        print(f"rejected rows (with line numbers and reasons): {summary.rejects_file}")


def plural(count, noun):
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def cmd_serve(arguments):
    from . import service  # grpc is imported only by the commands that need it

    try:
        # Creates the ledger with the example programme when it is new, as every writing command does.
        result = service.serve(
            data_directory(arguments), arguments.address, tokens_file=arguments.tokens_file,
            tls_cert=arguments.tls_cert, tls_key=arguments.tls_key, tls_client_ca=arguments.tls_client_ca,
            insecure=arguments.insecure, metrics_port=arguments.metrics_port, sync=not arguments.no_sync,
        )
    except ValueError as error:  # flags that do not go together (TLS halves, no tokens off loopback)
        raise Usage(one_line(error)) from None
    return result if isinstance(result, int) else EXIT_OK


BALANCE_TIMES = ("as_of_s", "next_expiry_s")


def cmd_balance(arguments):
    with open_existing(arguments) as ledger:
        balance = ledger.balance(arguments.member_id, arguments.as_of)
    emit(arguments, vars(balance), BALANCE_TIMES)
    return EXIT_OK


def cmd_history(arguments):
    with open_existing(arguments) as ledger:
        page = ledger.history(arguments.member_id, arguments.limit, arguments.before_seq)
    if arguments.json:
        print_json({"entries": [vars(entry) for entry in page.entries], "next_before_seq": page.next_before_seq})
        return EXIT_OK
    print_entries(page.entries)
    if page.next_before_seq is not None:
        print(f"(more: --before-seq {page.next_before_seq})")
    return EXIT_OK


def print_entries(entries):
    print(f"{'seq':>10}  {'time (UTC)':<20}  {'kind':<8}  {'points':>14}  {'balance':>14}  {'version':>7}  ref")
    for entry in entries:
        print(f"{entry.seq:>10}  {format_time(entry.time_s):<20}  {entry.kind:<8}  {entry.points:>14,}  "
              f"{entry.balance:>14,}  {entry.program_version:>7}  {entry.ref_id}")


def write_result(arguments, result):
    emit(arguments, {"status": result.status, "seq": result.seq, "points": result.points,
                     "balance": result.balance})
    return EXIT_OK


def cmd_refund(arguments):
    with open_ledger(arguments) as ledger:
        result = ledger.refund(arguments.refund_id, arguments.order_id, arguments.amount_minor,
                               now_or(arguments.time))
    return write_result(arguments, result)


def cmd_redeem(arguments):
    with open_ledger(arguments) as ledger:
        result = ledger.redeem(arguments.redemption_id, arguments.member_id, arguments.points,
                               now_or(arguments.time))
    return write_result(arguments, result)


def cmd_adjust(arguments):
    with open_ledger(arguments) as ledger:
        result = ledger.adjust(arguments.adjustment_id, arguments.member_id, arguments.points,
                               arguments.reason, now_or(arguments.time))
    return write_result(arguments, result)


def now_or(time_s):
    return int(time.time()) if time_s is None else time_s


def cmd_expire(arguments):
    with open_ledger(arguments) as ledger:
        result = ledger.expire(arguments.as_of)
    emit(arguments, vars(result), ("as_of_s",))
    return EXIT_OK


def cmd_program_set(arguments):
    if arguments.file == "-":
        text = sys.stdin.read()
    else:
        with open(arguments.file, encoding="utf-8") as handle:
            text = handle.read()
    with open_ledger(arguments) as ledger:
        version = ledger.set_program(text, arguments.effective_from)
        stored = ledger.get_program(version)
    emit(arguments, {"version": version, "effective_from_s": stored.effective_from_s}, ("effective_from_s",))
    return EXIT_OK


def cmd_program_show(arguments):
    with open_existing(arguments) as ledger:
        stored = ledger.get_program(arguments.version)
    # Canonical JSON keeps multipliers exact; its numbers print as the decimals they are.
    document = json.loads(program.canonical_json(stored.document))
    if arguments.json:
        print_json({"version": stored.version, "effective_from_s": stored.effective_from_s, "document": document})
    else:
        print(f"# version {stored.version}, effective from {format_time(stored.effective_from_s)}")
        print(json.dumps(document, indent=2, sort_keys=True))
    return EXIT_OK


LIABILITY_LINES = ("earned", "adjusted_positive", "adjusted_negative", "clawed_back", "redeemed", "expired",
                   "outstanding", "expiring_30_days", "expiring_60_days", "expiring_90_days", "overdue")


def cmd_report(arguments):
    if arguments.name == "rollforward":
        return report_rollforward(arguments)
    if arguments.from_time is not None or arguments.to_time is not None:
        raise Usage("--from and --to belong to `report rollforward`")
    with open_existing(arguments) as ledger:
        report = ledger.liability(arguments.as_of)
    fields = dict(vars(report))
    fields["issued"] = report.issued
    if arguments.json:
        print_json(fields)
        return EXIT_OK
    print(f"Points liability as of {format_time(report.as_of_s)} ({report.currency}, "
          f"one point = {report.point_value} {report.currency})")
    print(f"  {'':<22}{'points':>20}{'value':>20}")
    for name in LIABILITY_LINES:
        value = report.point_value * fields[name]
        print(f"  {name.replace('_', ' '):<22}{fields[name]:>20,}{value:>20,.2f}")
    print("  outstanding by tier")
    for tier, points in report.outstanding_by_tier.items():
        print(f"    {tier:<20}{points:>20,}{report.point_value * points:>20,.2f}")
    return EXIT_OK


def report_rollforward(arguments):
    if arguments.from_time is None or arguments.to_time is None:
        raise Usage("report rollforward needs --from and --to")
    with open_existing(arguments) as ledger:
        report = ledger.rollforward(arguments.from_time, arguments.to_time)
    fields = dict(vars(report))
    fields["breakage_rate"] = None if report.breakage_rate is None else float(report.breakage_rate)
    emit(arguments, fields, ("from_s", "to_s"))
    return EXIT_OK


def cmd_export(arguments):
    file_format = arguments.format or ("parquet" if arguments.output.endswith((".parquet", ".pq")) else "csv")
    if file_format == "parquet" and arguments.output == "-":
        raise Usage("Parquet export needs --output FILE")
    with open_existing(arguments) as ledger:
        last_seq = ledger.last_seq()
        to_seq = last_seq if arguments.to_seq is None else min(arguments.to_seq, last_seq)
        chunks = journal_chunks(ledger, arguments.from_seq, to_seq)
        count = (write_parquet if file_format == "parquet" else write_csv)(arguments.output, chunks)
    fields = {"entries": count, "from_seq": arguments.from_seq, "to_seq": to_seq, "output": arguments.output,
              "format": file_format}
    if arguments.output == "-":
        print(f"exported {count:,} entries", file=sys.stderr)
    else:
        emit(arguments, fields)
    return EXIT_OK


def journal_chunks(ledger, from_seq, to_seq):
    """Lists of entries from from_seq through to_seq; each chunk is one read snapshot.

    The journal only grows, so chunks read from later snapshots still form one
    consistent prefix: the entries up to to_seq, fixed when the export began.
    """
    seq = from_seq
    while seq <= to_seq:
        entries = read_adopting_map_growth(ledger, ledger.journal, seq, min(EXPORT_CHUNK_ENTRIES, to_seq - seq + 1))
        entries = [entry for entry in entries if entry.seq <= to_seq]
        if not entries:
            return
        yield entries
        seq = entries[-1].seq + 1


def read_adopting_map_growth(ledger, read, *arguments):
    """read(*arguments); if a writer in another process grew the map meanwhile, adopt its size and read again."""
    try:
        return read(*arguments)
    except lmdb.MapResizedError:
        ledger.store.env.set_mapsize(0)  # 0: take the size the environment has now
        return read(*arguments)


def write_csv(output, chunks):
    handle = sys.stdout if output == "-" else open(output, "w", newline="", encoding="utf-8")
    count = 0
    try:
        writer = csv.writer(handle)
        writer.writerow(JOURNAL_FIELDS)
        for entries in chunks:
            writer.writerows([getattr(entry, name) for name in JOURNAL_FIELDS] for entry in entries)
            count += len(entries)
    finally:
        if handle is not sys.stdout:
            handle.close()
        else:
            handle.flush()
    return count


def write_parquet(output, chunks):
    import pyarrow as pa
    import pyarrow.parquet as pa_parquet

    schema = pa.schema([("seq", pa.int64()), ("kind", pa.string()), ("member_id", pa.string()),
                        ("ref_id", pa.string()), ("points", pa.int64()), ("balance", pa.int64()),
                        ("time_s", pa.int64()), ("program_version", pa.int64())])
    count = 0
    with pa_parquet.ParquetWriter(output, schema) as writer:
        for entries in chunks:
            columns = {name: [getattr(entry, name) for entry in entries] for name in JOURNAL_FIELDS}
            writer.write_table(pa.table(columns, schema=schema))
            count += len(entries)
    return count


def cmd_verify(arguments):
    with open_existing(arguments) as ledger:
        report = ledger.verify()
    if arguments.json:
        print_json({"ok": report.ok, "entries": report.entries, "members": report.members,
                    "problems": report.problems})
    elif report.ok:
        print(f"ok: {report.entries:,} journal entries, {report.members:,} members, every invariant holds")
    else:
        print(f"{len(report.problems)} problem(s) in {os.path.abspath(ledger.path)}:")
        for problem in report.problems:
            print(f"  {problem}")
    return EXIT_OK if report.ok else EXIT_REFUSED


def cmd_backup(arguments):
    destination = arguments.destination
    if os.path.exists(destination) and (not os.path.isdir(destination) or os.listdir(destination)):
        raise AlreadyExists(f"{destination}: exists and is not an empty directory; give a new one")
    started = time.perf_counter()
    with open_existing(arguments) as ledger:
        os.makedirs(destination, exist_ok=True)
        # One read transaction: a consistent snapshot, while writers go on (LMDB copy, compacted).
        ledger.store.env.copy(destination, compact=True)
    fields = {"backup": os.path.abspath(destination),
              "bytes": os.path.getsize(os.path.join(destination, "data.mdb")),
              "seconds": round(time.perf_counter() - started, 3)}
    if arguments.verify:
        with Ledger(destination, readonly=True) as copy:
            report = copy.verify()
        fields.update(verified=report.ok, entries=report.entries, problems=report.problems)
        if not report.ok:
            emit(arguments, fields)
            return EXIT_REFUSED
    emit(arguments, fields)
    return EXIT_OK


def cmd_bench(arguments):
    """A small embedded backfill, honest about what it ran (the full suite is benchmarks/run.py)."""
    suite = find_benchmarks()
    if arguments.suite:
        if suite is None:
            raise LedgerError("benchmarks/run.py is not here: the suite ships with the source, not the package")
        extra = arguments.suite_arguments[1:] if arguments.suite_arguments[:1] == ["--"] else arguments.suite_arguments
        command = [sys.executable, os.path.join(suite, "run.py")] + extra
        return subprocess.run(command).returncode
    generate, label = bench_generator(suite, arguments.order_ids)
    with tempfile.TemporaryDirectory(prefix="pointsledger-bench-", dir=arguments.scratch_dir) as scratch:
        ledger = Ledger(os.path.join(scratch, "ledger"), sync=False, engine=arguments.engine)
        try:
            ledger.set_program(dict(program.EXAMPLE_PROGRAM, effective_from=limits.time_s_min))
            seconds, applied = 0.0, 0
            for batch in generate(arguments.count, arguments.batch_size):
                started = time.perf_counter()
                applied += ledger.purchases(*batch).applied
                seconds += time.perf_counter() - started
            started = time.perf_counter()
            ledger.sync()
            seconds += time.perf_counter() - started
        finally:
            ledger.close()
        store_bytes = os.stat(os.path.join(scratch, "ledger", "data.mdb")).st_blocks * 512
    print_json({"workload": label, "engine": ledger.engine_name, "count": arguments.count,
                "applied": applied, "seconds": round(seconds, 4), "rate": round(arguments.count / seconds, 1),
                "bytes_per_purchase": round(store_bytes / arguments.count, 1), "peak_rss_mib": peak_rss_mib(),
                "batch_size": arguments.batch_size})
    return EXIT_OK


def find_benchmarks():
    """benchmarks/ of a source checkout (src/pointsledger/../../benchmarks), or None."""
    here = os.path.dirname(os.path.abspath(__file__))
    candidate = os.path.normpath(os.path.join(here, "..", "..", "benchmarks"))
    if os.path.exists(os.path.join(candidate, "workload.py")):
        return candidate
    return None


def bench_generator(suite, order_ids):
    """(generate(count, batch_size) -> column tuples, label): the standard workload when it is here."""
    if suite is not None:
        sys.path.insert(0, suite)
        try:
            import workload
        finally:
            sys.path.remove(suite)

        def standard(count, batch_size):
            for batch in workload.iter_backfill_batches(count, batch_size, order_ids=order_ids):
                yield tuple(batch[name] for name in workload.COLUMNS)

        return standard, f"backfill-{order_ids}"
    return builtin_backfill(order_ids), f"builtin-backfill-{order_ids}"


def builtin_backfill(order_ids):
    """A seeded stand-in of the §13 backfill for an installed package: same shape, not the same rows."""
    import numpy as np

    categories = ("grocery", "electronics", "fashion", "home", "beauty", "sports", "toys", "gift_cards")
    weights = (0.30, 0.10, 0.15, 0.12, 0.10, 0.08, 0.08, 0.07)
    members = 100_000

    def generate(count, batch_size):
        rng = np.random.default_rng(1)
        cumulative = np.cumsum(np.arange(1, members + 1, dtype=np.float64) ** -0.7)
        cumulative /= cumulative[-1]
        for start in range(0, count, batch_size):
            rows = min(batch_size, count - start)
            ranks = np.minimum(np.searchsorted(cumulative, rng.random(rows)), members - 1)
            amounts = np.clip(np.rint(rng.lognormal(np.log(3_000), 1.0, rows)), 1, 100_000).astype(np.int64)
            times = 1_704_067_200 + (np.arange(start, start + rows) * (731 * 86_400) // count).astype(np.int64)
            if order_ids == "seq":
                ids = [f"o{index:012d}" for index in range(start, start + rows)]
            else:
                text = rng.bytes(8 * rows).hex()
                ids = [text[at:at + 16] for at in range(0, 16 * rows, 16)]
            yield (ids, [f"m{rank:06d}" for rank in ranks.tolist()], amounts,
                   [categories[code] for code in rng.choice(len(categories), size=rows, p=weights)], times)

    return generate


def peak_rss_mib():
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# --- the parser ------------------------------------------------------------------------------------


def add_command(commands, name, run, summary, examples, parents=()):
    parser = commands.add_parser(
        name, help=summary, description=summary, parents=list(parents),
        epilog="example:\n  " + "\n  ".join(examples), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(run=run)
    return parser


def build_parser():
    data_default = os.environ.get(DATA_ENVIRONMENT) or DEFAULT_PATH
    parser = argparse.ArgumentParser(
        prog="pointsledger", description="The loyalty points ledger: purchases in, exact balances out.",
        epilog="example:\n  pointsledger ingest --sample && pointsledger balance member-001\n\n"
               "exit status: 0 success, 1 refused or failed, 2 bad usage",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", default=data_default, metavar="DIR",
                        help=f"ledger directory (default ${DATA_ENVIRONMENT} or ./{DEFAULT_PATH})")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    # --data is also taken after the command (`pointsledger balance m1 --data DIR`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", default=argparse.SUPPRESS, metavar="DIR", help="ledger directory")
    with_json = argparse.ArgumentParser(add_help=False)
    with_json.add_argument("--json", action="store_true", help="print one JSON document")
    both = (common, with_json)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_command(commands, "info", cmd_info, "version, engine, store path, size and counts",
                       ["pointsledger info --json"], both)

    add_ingest_parser(commands, both)

    serve = add_command(commands, "serve", cmd_serve, "run the gRPC service over the ledger",
                        ["pointsledger serve", "pointsledger serve --address 0.0.0.0:50051 --tokens-file tokens.json "
                         "--tls-cert server.pem --tls-key server.key"], (common,))
    serve.add_argument("--address", default=SERVE_ADDRESS_DEFAULT, help=f"host:port (default {SERVE_ADDRESS_DEFAULT})")
    serve.add_argument("--tokens-file", metavar="FILE", help="bearer tokens and their scopes")
    serve.add_argument("--tls-cert", metavar="FILE", help="server certificate (PEM)")
    serve.add_argument("--tls-key", metavar="FILE", help="server private key (PEM)")
    serve.add_argument("--tls-client-ca", metavar="FILE", help="CA of client certificates (mutual TLS)")
    serve.add_argument("--insecure", action="store_true",
                       help="allow a non-loopback address without tokens (say it out loud)")
    serve.add_argument("--metrics-port", type=integer_argument(1, 65_535), metavar="PORT")
    serve.add_argument("--no-sync", action="store_true", help="relaxed sync (not durable per call; tests only)")

    balance = add_command(commands, "balance", cmd_balance, "a member's balance, tier and expiring points",
                          ["pointsledger balance member-001", "pointsledger balance member-001 --as-of 2027-01-01"],
                          both)
    balance.add_argument("member_id")
    balance.add_argument("--as-of", type=time_argument, dest="as_of", metavar="TIME", help="default now")

    history = add_command(commands, "history", cmd_history, "a member's journal entries, newest first",
                          ["pointsledger history member-001 --limit 10"], both)
    history.add_argument("member_id")
    history.add_argument("--limit", type=integer_argument(1, limits.history_limit_max), default=HISTORY_LIMIT_DEFAULT)
    history.add_argument("--before-seq", type=integer_argument(1, limits.INT64_MAX), dest="before_seq",
                         metavar="SEQ", help="page on: the cursor the previous page printed")

    refund = add_command(commands, "refund", cmd_refund, "refund (part of) an order: claws its points back",
                         ["pointsledger refund refund-17 sample-00003 5000 --time 2026-03-01"], both)
    refund.add_argument("refund_id")
    refund.add_argument("order_id")
    refund.add_argument("amount_minor", type=integer_argument(limits.amount_minor_min, limits.amount_minor_max))
    refund.add_argument("--time", type=time_argument, metavar="TIME", help="event time (default now)")

    redeem = add_command(commands, "redeem", cmd_redeem, "spend a member's points, soonest-expiring first",
                         ["pointsledger redeem redemption-9 member-001 500"], both)
    redeem.add_argument("redemption_id")
    redeem.add_argument("member_id")
    redeem.add_argument("points", type=integer_argument(limits.INT64_MIN, limits.INT64_MAX))
    redeem.add_argument("--time", type=time_argument, metavar="TIME", help="event time (default now)")

    adjust = add_command(commands, "adjust", cmd_adjust, "credit (points > 0) or debit (points < 0) a member",
                         ["pointsledger adjust adjustment-4 member-001 250 --reason goodwill",
                          "pointsledger adjust adjustment-5 member-001 -100 --reason 'duplicate credit'"], both)
    adjust.add_argument("adjustment_id")
    adjust.add_argument("member_id")
    adjust.add_argument("points", type=integer_argument(limits.INT64_MIN, limits.INT64_MAX))
    adjust.add_argument("--reason", required=True)
    adjust.add_argument("--time", type=time_argument, metavar="TIME", help="event time (default now)")

    expire = add_command(commands, "expire", cmd_expire, "expire every member's due points (safe to re-run)",
                         ["pointsledger expire", "pointsledger expire --as-of 2027-04-01"], both)
    expire.add_argument("--as-of", type=time_argument, dest="as_of", metavar="TIME", help="default now")

    add_program_parser(commands, common, with_json)

    report = add_command(commands, "report", cmd_report, "finance reports: liability, rollforward",
                         ["pointsledger report liability", "pointsledger report liability --as-of 2027-01-01 --json",
                          "pointsledger report rollforward --from 2026-01-01 --to 2027-01-01"], both)
    report.add_argument("name", choices=["liability", "rollforward"])
    report.add_argument("--as-of", type=time_argument, dest="as_of", metavar="TIME", help="liability: default now")
    report.add_argument("--from", type=time_argument, dest="from_time", metavar="TIME", help="rollforward: start")
    report.add_argument("--to", type=time_argument, dest="to_time", metavar="TIME", help="rollforward: end")

    export = add_command(commands, "export", cmd_export, "the journal to CSV or Parquet, from a seq, in chunks",
                         ["pointsledger export --output journal.parquet",
                          "pointsledger export --from-seq 1000001 > journal.csv"], both)
    export.add_argument("--output", default="-", metavar="FILE", help="default - (CSV on stdout)")
    export.add_argument("--format", choices=["csv", "parquet"], help="default: from the file name")
    export.add_argument("--from-seq", type=integer_argument(1, limits.INT64_MAX), default=1, metavar="SEQ")
    export.add_argument("--to-seq", type=integer_argument(1, limits.INT64_MAX), metavar="SEQ",
                        help="last seq (default: the last entry when the export starts)")

    add_command(commands, "verify", cmd_verify, "check every invariant; exit 1 and list the problems if any fails",
                ["pointsledger verify"], both)

    backup = add_command(commands, "backup", cmd_backup,
                         "a consistent, compacted copy of the ledger, taken while it is in use",
                         ["pointsledger backup /backups/ledger-2026-03-15 --verify"], both)
    backup.add_argument("destination", metavar="DIR", help="a new (or empty) directory")
    backup.add_argument("--verify", action="store_true", help="verify the copy afterwards")

    bench = add_command(commands, "bench", cmd_bench,
                        "embedded backfill benchmark (the standard workload when benchmarks/ is here)",
                        ["pointsledger bench --count 1000000",
                         "pointsledger bench --suite -- --smoke   # benchmarks/run.py, source checkout only"],
                        (common,))
    bench.add_argument("--count", type=integer_argument(1, BENCH_COUNT_MAX), default=BENCH_COUNT_DEFAULT)
    bench.add_argument("--order-ids", choices=["seq", "rand"], default="seq")
    bench.add_argument("--engine", choices=sorted(engines.ENGINES), default=None, help="default: the default engine")
    bench.add_argument("--batch-size", type=integer_argument(1, limits.batch_items_max),
                       default=INGEST_BATCH_ROWS_DEFAULT)
    bench.add_argument("--scratch-dir", metavar="DIR", help="where the scratch ledger goes (default: temp)")
    bench.add_argument("--suite", action="store_true", help="run benchmarks/run.py with the arguments after --")
    bench.add_argument("suite_arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def add_ingest_parser(commands, parents):
    ingest = add_command(
        commands, "ingest", cmd_ingest,
        "ingest purchases from a CSV or Parquet file (columns order_id, member_id, amount_minor, category, "
        "time_s; time_s in Unix seconds or ISO 8601 UTC)",
        ["pointsledger ingest purchases-2025.parquet",
         "pointsledger ingest --sample",
         "pointsledger ingest late-orders.csv --sort --rejects late-orders.bad.csv",
         "pointsledger ingest orders.csv --server ledger.internal:50051 --token-file token.txt"],
        parents,
    )
    ingest.add_argument("file", nargs="?", metavar="FILE")
    ingest.add_argument("--sample", nargs="?", const="csv", choices=sorted(SAMPLES),
                        help="ingest the bundled sample purchases (csv, or parquet)")
    ingest.add_argument("--format", choices=["csv", "parquet"], help="default: from the file name")
    ingest.add_argument("--batch-size", type=integer_argument(1, limits.batch_items_max),
                        default=INGEST_BATCH_ROWS_DEFAULT, metavar="ROWS",
                        help=f"rows per committed batch (default {INGEST_BATCH_ROWS_DEFAULT:,})")
    ingest.add_argument("--rejects", metavar="FILE", help="reject file (default FILE.rejects.csv)")
    ingest.add_argument("--sort", action="store_true",
                        help="sort the rows by time first (external sort: runs on disk, --sort-run-rows in memory)")
    ingest.add_argument("--sort-run-rows", type=integer_argument(1_000, 100_000_000),
                        default=SORT_RUN_ROWS_DEFAULT, metavar="ROWS",
                        help=f"rows sorted in memory at a time (default {SORT_RUN_ROWS_DEFAULT:,})")
    ingest.add_argument("--scratch-dir", metavar="DIR", help="where --sort writes its runs (default: temp)")
    ingest.add_argument("--no-resume", action="store_true", help="ignore and do not keep a resume point")
    ingest.add_argument("--resume-file", metavar="FILE",
                        help="where the resume point is kept (default: in the ledger directory; "
                             "with --server, in ~/.cache/pointsledger)")
    ingest.add_argument("--progress", choices=["auto", "bar", "lines", "none"], default="auto",
                        help="auto: a bar on a terminal, periodic lines otherwise")
    ingest.add_argument("--progress-interval", type=positive_seconds, default=5.0, metavar="SECONDS",
                        help="seconds between progress lines (default 5)")
    ingest.add_argument("--quiet", action="store_true", help="no progress output")
    ingest.add_argument("--server", metavar="ADDRESS", help="send to a running server (host:port) instead")
    ingest.add_argument("--token", help="bearer token for --server (or $POINTSLEDGER_TOKEN)")
    ingest.add_argument("--token-file", metavar="FILE", help="file holding the bearer token")
    ingest.add_argument("--tls-ca", metavar="FILE", help="CA certificate to trust the server's TLS")
    ingest.add_argument("--window", type=integer_argument(1, 64), default=INGEST_WINDOW_DEFAULT,
                        help=f"batches in flight to the server (default {INGEST_WINDOW_DEFAULT})")


def add_program_parser(commands, common, with_json):
    program_parser = commands.add_parser(
        "program", help="set or show the earning programme", description="set or show the earning programme",
        epilog="example:\n  pointsledger program set programme.json --effective-from 2027-01-01\n"
               "  pointsledger program show --version 1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = program_parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    set_parser = add_command(actions, "set", cmd_program_set,
                             "store a programme (JSON) as a new version; every problem is listed",
                             ["pointsledger program set programme.json --effective-from 2027-01-01"],
                             (common, with_json))
    set_parser.add_argument("file", metavar="FILE", help="the JSON document, or - for stdin")
    set_parser.add_argument("--effective-from", type=time_argument, dest="effective_from", metavar="TIME",
                            help="default: the document's effective_from, else now")
    show = add_command(actions, "show", cmd_program_show, "print a programme version (default: the latest)",
                       ["pointsledger program show", "pointsledger program show --version 1 --json"],
                       (common, with_json))
    show.add_argument("--version", type=integer_argument(1, limits.INT64_MAX), metavar="N")


def _version():
    import pointsledger

    return pointsledger.__version__


# --- main --------------------------------------------------------------------------------------------


def one_line(text):
    return " ".join(str(text).split())


def main(argv=None):
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        return arguments.run(arguments)
    except Usage as error:
        parser.error(str(error))  # exits 2
    except BrokenPipeError:
        # The reader went away (`pointsledger export | head`): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_REFUSED
    except InvalidProgram as error:
        print(f"pointsledger: {error.code}: invalid programme, {len(error.problems)} problem(s):", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_REFUSED
    except LedgerError as error:
        print(f"pointsledger: {error.code}: {one_line(error)}", file=sys.stderr)
        return EXIT_REFUSED
    except (OSError, lmdb.Error) as error:
        print(f"pointsledger: error: {one_line(error)}", file=sys.stderr)
        return EXIT_REFUSED
    except ImportError as error:  # serve / --server before the service is installed
        print(f"pointsledger: error: {one_line(error)}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print("pointsledger: interrupted (an ingest resumes where it stopped when run again)", file=sys.stderr)
        return EXIT_INTERRUPTED
