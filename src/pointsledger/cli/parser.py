"""The argument parser: every command, its options and its --help example."""

import argparse
import os

from .. import engine as engines, limits
from ..ledger import DEFAULT_PATH
from .arguments import (
    address_argument, birthday_argument, id_argument, integer_argument, positive_seconds, reason_argument, time_argument,
)
from .bench import cmd_bench
from .common import (
    BENCH_COUNT_DEFAULT, BENCH_COUNT_MAX, DATA_ENVIRONMENT, EXIT_STATUS_HELP, HISTORY_LIMIT_DEFAULT,
    GROUP_WAIT_MS_DEFAULT, INGEST_BATCH_ROWS_DEFAULT, INGEST_WINDOW_DEFAULT, SAMPLES, SERVE_ADDRESS_DEFAULT,
    SORT_RUN_ROWS_DEFAULT,
)
from .ingest import cmd_ingest
from .engagement import cmd_profile_set, cmd_profile_show, cmd_referral_register, cmd_referral_show
from .operations import cmd_adjust, cmd_balance, cmd_expire, cmd_history, cmd_redeem, cmd_refund
from .program_commands import cmd_program_set, cmd_program_show
from .reports import cmd_report
from .arguments import _checked
from ..revenue import parse_rate
from .revenue_commands import cmd_estimate_list, cmd_estimate_set
from .serve import cmd_serve
from .simulate import cmd_simulate
from .shard_commands import add_shard_parsers, add_shards_option
from .store_commands import cmd_backup, cmd_export, cmd_info, cmd_verify

# A retry without --time is the same operation, not a new one at a later time.
TIME_HELP = ("event time (default: the recorded time if the id is already used, so a retry answers "
             "DUPLICATE with the original result; else now)")


def add_command(commands, name, run, summary, examples, parents=()):
    parser = commands.add_parser(
        name, help=summary, description=summary, parents=list(parents),
        epilog="example:\n  " + "\n  ".join(examples) + "\n\n" + EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(run=run)
    return parser


class OneLineParser(argparse.ArgumentParser):
    """A usage mistake is one line on stderr and exit status 2 (README), not argparse's usage block.

    The sub-command parsers are made of the same class (add_subparsers' default)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser():
    data_default = os.environ.get(DATA_ENVIRONMENT) or DEFAULT_PATH
    parser = OneLineParser(
        prog="pointsledger", description="The loyalty points ledger: purchases in, exact balances out.",
        epilog="example:\n  pointsledger ingest --sample && pointsledger balance member-001\n\n"
               + EXIT_STATUS_HELP,
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
    serve.add_argument("--address", type=address_argument, default=SERVE_ADDRESS_DEFAULT,
                       help=f"host:port, port 0 to 65535, 0 for any free one (default {SERVE_ADDRESS_DEFAULT})")
    serve.add_argument("--tokens-file", metavar="FILE", help="bearer tokens and their scopes")
    serve.add_argument("--tls-cert", metavar="FILE", help="server certificate (PEM)")
    serve.add_argument("--tls-key", metavar="FILE", help="server private key (PEM)")
    serve.add_argument("--tls-client-ca", metavar="FILE", help="CA of client certificates (mutual TLS)")
    serve.add_argument("--insecure", action="store_true",
                       help="allow a non-loopback address without tokens (say it out loud)")
    serve.add_argument("--metrics-port", type=integer_argument(1, 65_535), metavar="PORT")
    serve.add_argument("--no-sync", action="store_true", help="relaxed sync (not durable per call; tests only)")
    serve.add_argument("--group-wait-ms", type=integer_argument(0, 1000), metavar="MS",
                       help=f"while several callers write, let a commit's group fill for up to MS as long as "
                            f"writes keep arriving; 0 commits at once (default {GROUP_WAIT_MS_DEFAULT})")

    balance = add_command(commands, "balance", cmd_balance, "a member's balance, tier and expiring points (figures as of --as-of and all-time "
                          "totals, labelled apart)",
                          ["pointsledger balance member-001", "pointsledger balance member-001 --as-of 2027-01-01"],
                          both)
    balance.add_argument("member_id", type=id_argument("member_id"))
    balance.add_argument("--as-of", type=time_argument, dest="as_of", metavar="TIME", help="default now")
    add_shards_option(balance)

    history = add_command(commands, "history", cmd_history, "a member's journal entries, newest first",
                          ["pointsledger history member-001 --limit 10"], both)
    history.add_argument("member_id", type=id_argument("member_id"))
    history.add_argument("--limit", type=integer_argument(1, limits.history_limit_max), default=HISTORY_LIMIT_DEFAULT)
    history.add_argument("--before-seq", type=integer_argument(1, limits.INT64_MAX), dest="before_seq",
                         metavar="SEQ", help="page on: the cursor the previous page printed")
    add_shards_option(history)

    refund = add_command(commands, "refund", cmd_refund, "refund (part of) an order: claws its points back",
                         ["pointsledger refund refund-17 sample-00003 5000 --time 2026-03-01"], both)
    refund.add_argument("refund_id", type=id_argument("refund_id"))
    refund.add_argument("order_id", type=id_argument("order_id"))
    refund.add_argument("amount_minor", type=integer_argument(limits.amount_minor_min, limits.amount_minor_max))
    refund.add_argument("--time", type=time_argument, metavar="TIME", help=TIME_HELP)

    redeem = add_command(commands, "redeem", cmd_redeem, "spend a member's points, soonest-expiring first",
                         ["pointsledger redeem redemption-9 member-001 500"], both)
    redeem.add_argument("redemption_id", type=id_argument("redemption_id"))
    redeem.add_argument("member_id", type=id_argument("member_id"))
    redeem.add_argument("points", type=integer_argument(1, limits.INT64_MAX))
    redeem.add_argument("--time", type=time_argument, metavar="TIME", help=TIME_HELP)

    adjust = add_command(commands, "adjust", cmd_adjust, "credit (points > 0) or debit (points < 0) a member",
                         ["pointsledger adjust adjustment-4 member-001 250 --reason goodwill",
                          "pointsledger adjust adjustment-5 member-001 -100 --reason 'duplicate credit'"], both)
    adjust.add_argument("adjustment_id", type=id_argument("adjustment_id"))
    adjust.add_argument("member_id", type=id_argument("member_id"))
    adjust.add_argument("points", type=integer_argument(limits.INT64_MIN, limits.INT64_MAX, nonzero=True))
    adjust.add_argument("--reason", type=reason_argument, required=True)
    adjust.add_argument("--time", type=time_argument, metavar="TIME", help=TIME_HELP)

    expire = add_command(commands, "expire", cmd_expire, "expire every member's due points (safe to re-run)",
                         ["pointsledger expire", "pointsledger expire --as-of 2027-04-01"], both)
    expire.add_argument("--as-of", type=time_argument, dest="as_of", metavar="TIME", help="default now")

    add_program_parser(commands, common, with_json)
    add_estimate_parser(commands, common, with_json)
    add_engagement_parsers(commands, both)

    report = add_command(commands, "report", cmd_report, "finance reports: liability (all-time totals, and figures as of --as-of, labelled "
                         "apart), rollforward (whole UTC days, --from up to --to), revenue (IFRS 15 / ASC 606 "
                         "revenue and contract liability per cohort, --from up to --to)",
                         ["pointsledger report liability", "pointsledger report liability --as-of 2027-01-01 --json",
                          "pointsledger report rollforward --from 2026-01-01 --to 2027-01-01",
                          "pointsledger report revenue --from 2026-01-01 --to 2027-01-01 --cohort quarter"], both)
    report.add_argument("name", choices=["liability", "rollforward", "revenue"])
    report.add_argument("--cohort", choices=["year", "quarter", "month"],
                        help="revenue: cohorts by the UTC year, quarter or month of issue (default year)")
    report.add_argument("--as-of", type=time_argument, dest="as_of", metavar="TIME", help="liability: default now")
    # --from and --to are read as text and made dates by cmd_report, which knows the report and so why a
    # date is needed (the rollforward's days, revenue's midnights); its errors still come from this parser.
    report.set_defaults(report_parser=report)
    report.add_argument("--from", dest="from_time", metavar="DATE",
                        help="rollforward: the first UTC day covered (YYYY-MM-DD)")
    report.add_argument("--to", dest="to_time", metavar="DATE",
                        help="rollforward: the UTC day after the last one covered (YYYY-MM-DD, exclusive; "
                             "equal to --from: an empty period, all zero)")
    add_shards_option(report)

    simulate = add_command(commands, "simulate", cmd_simulate,
                           "what-if: re-price the purchases and refunds of [--from, --to) under a draft programme and "
                           "compare with what was recorded (total, per tier, per category; the ledger is not changed)",
                           ["pointsledger simulate double-electronics.json --from 2026-12-01 --to 2027-01-01",
                            "pointsledger simulate draft.json --from 2026-01-01 --to 2027-01-01 --json"], both)
    simulate.add_argument("draft", metavar="DRAFT", help="the draft programme (JSON file, - for stdin)")
    simulate.add_argument("--from", type=time_argument, dest="from_time", metavar="TIME", required=True,
                          help="first instant counted (a date is its midnight UTC)")
    simulate.add_argument("--to", type=time_argument, dest="to_time", metavar="TIME", required=True,
                          help="end of the period, not included")
    simulate.add_argument("--scratch-dir", metavar="DIR",
                          help="where the replay's scratch store goes, removed afterwards (default: temp)")

    export = add_command(commands, "export", cmd_export, "the journal to CSV or Parquet, from a seq, in chunks",
                         ["pointsledger export --output journal.parquet",
                          "pointsledger export --from-seq 1000001 > journal.csv"], both)
    export.add_argument("--output", default="-", metavar="FILE", help="default - (CSV on stdout)")
    export.add_argument("--format", choices=["csv", "parquet"], help="default: from the file name")
    export.add_argument("--from-seq", type=integer_argument(1, limits.INT64_MAX), default=1, metavar="SEQ")
    export.add_argument("--to-seq", type=integer_argument(1, limits.INT64_MAX), metavar="SEQ",
                        help="last seq (default: the last entry when the export starts)")

    verify = add_command(commands, "verify", cmd_verify,
                         "check every invariant; exit 1 and list the problems if any fails",
                         ["pointsledger verify", "pointsledger verify --shards shard-0,shard-1,shard-2"], both)
    add_shards_option(verify)

    backup = add_command(commands, "backup", cmd_backup,
                         "a consistent, compacted copy of the ledger, taken while it is in use",
                         ["pointsledger backup /backups/ledger-2026-03-15 --verify"], both)
    backup.add_argument("destination", metavar="DIR", help="a new (or empty) directory")
    backup.add_argument("--verify", action="store_true", help="verify the copy afterwards")

    add_shard_parsers(commands, add_command, both)

    bench = add_command(commands, "bench", cmd_bench,
                        "embedded backfill benchmark (the standard workload when benchmarks/ is here)",
                        ["pointsledger bench --count 1000000",
                         "pointsledger bench --count 1000000 --json",
                         "pointsledger bench --suite -- --smoke   # benchmarks/run.py, source checkout only"],
                        both)
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
        "time_s; time_s in Unix seconds, ISO 8601 UTC or a date, midnight UTC); rows go in file order, and the "
        "summary counts those out of time order (--sort applies them in time order); exit status 3 when "
        "rows were rejected",
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
               "  pointsledger program show --version 1\n"
               "  pointsledger program show > programme.json   # what `program set` reads back\n\n"
               + EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = program_parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    set_parser = add_command(actions, "set", cmd_program_set,
                             "store a programme (JSON) as a new version; every problem is listed. A set-up "
                             "step: it creates the ledger with the example programme when there is none",
                             ["pointsledger program set programme.json --effective-from 2027-01-01"],
                             (common, with_json))
    set_parser.add_argument("file", metavar="FILE", help="the JSON document, or - for stdin")
    set_parser.add_argument("--effective-from", type=time_argument, dest="effective_from", metavar="TIME",
                            help="default: the document's effective_from, else now")
    show = add_command(actions, "show", cmd_program_show, "print a programme version (default: the latest)",
                       ["pointsledger program show", "pointsledger program show --version 1 --json"],
                       (common, with_json))
    show.add_argument("--version", type=integer_argument(1, limits.INT64_MAX), metavar="N")


def add_estimate_parser(commands, common, with_json):
    """estimate set | list: expected redemption rates for the revenue report (§19)."""
    estimate_parser = commands.add_parser(
        "estimate", help="set or list expected redemption rates (revenue, IFRS 15)",
        description="set or list expected redemption rates (revenue, IFRS 15)",
        epilog="example:\n  pointsledger estimate set e-2026 --from 2026-01-01 --rate 0.95\n"
               "  pointsledger estimate list\n\n" + EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = estimate_parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    set_parser = add_command(actions, "set", cmd_estimate_set,
                             "store an expected redemption rate (0 to 1, at most 4 decimal places) from an "
                             "instant on; idempotent on its id",
                             ["pointsledger estimate set e-2027 --from 2027-01-01 --rate 0.97"], (common, with_json))
    set_parser.add_argument("estimate_id", type=id_argument("estimate_id"))
    set_parser.add_argument("--from", type=time_argument, dest="effective_from", metavar="TIME", required=True,
                            help="the instant from which it applies (never before the previous estimate's)")
    set_parser.add_argument("--rate", type=_checked(parse_rate), required=True, metavar="RATE",
                            help="a decimal such as 0.95")
    add_command(actions, "list", cmd_estimate_list, "the redemption estimates, in the order they apply",
                ["pointsledger estimate list --json"], (common, with_json))


def add_engagement_parsers(commands, parents):
    """referral register|show and profile set|show (§14, §17)."""
    referral = commands.add_parser(
        "referral", help="register or show a referral", description="register or show a referral",
        epilog="example:\n  pointsledger referral register ref-1 member-001 new-member-7\n"
               "  pointsledger referral show ref-1\n\n" + EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = referral.add_subparsers(dest="action", required=True, metavar="ACTION")
    register = add_command(actions, "register", cmd_referral_register,
                           "record that a member referred someone not yet a member",
                           ["pointsledger referral register ref-1 member-001 new-member-7"], parents)
    register.add_argument("referral_id", type=id_argument("referral_id"))
    register.add_argument("referrer_id", type=id_argument("referrer_id"))
    register.add_argument("referee_id", type=id_argument("referee_id"))
    register.add_argument("--time", type=time_argument, metavar="TIME", help=TIME_HELP)
    show = add_command(actions, "show", cmd_referral_show, "a referral: open or settled, with the settling order",
                       ["pointsledger referral show ref-1 --json"], parents)
    show.add_argument("referral_id", type=id_argument("referral_id"))

    profile = commands.add_parser(
        "profile", help="set or show a member's profile (birthday)",
        description="set or show a member's profile (birthday)",
        epilog="example:\n  pointsledger profile set member-001 03-20\n  pointsledger profile show member-001\n\n"
               + EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = profile.add_subparsers(dest="action", required=True, metavar="ACTION")
    set_parser = add_command(actions, "set", cmd_profile_set,
                             "set a member's birthday (MM-DD), before or after its first purchase",
                             ["pointsledger profile set member-001 03-20",
                              "pointsledger profile set member-001 --clear"], parents)
    set_parser.add_argument("member_id", type=id_argument("member_id"))
    set_parser.add_argument("birthday", nargs="?", type=birthday_argument, metavar="MM-DD")
    set_parser.add_argument("--clear", action="store_true", help="remove the birthday")
    show = add_command(actions, "show", cmd_profile_show, "a member's profile",
                       ["pointsledger profile show member-001"], parents)
    show.add_argument("member_id", type=id_argument("member_id"))


def _version():
    import pointsledger

    return pointsledger.__version__
