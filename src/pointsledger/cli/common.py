"""What the command modules share: exit statuses, defaults, and opening the ledger."""

import os

from .. import limits
from ..errors import NotFound
from ..ledger import Ledger, open_with_example_program

# One rule for every command, so a scheduler can act on the status alone.
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_REJECTED_ROWS = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it
EXIT_STATUS_HELP = (
    "exit status: 0 done; 1 the ledger refused or the command failed; 2 bad usage or a bad argument\n"
    "value (found before the ledger is touched); 3 an ingest finished with rejected rows; 130 interrupted"
)
SAMPLES = {"csv": "sample_purchases.csv", "parquet": "sample_purchases.parquet"}
DATA_ENVIRONMENT = "POINTSLEDGER_DATA"
# Test hook: seconds to pause after each committed ingest batch (interruption tests).
INGEST_DELAY_ENVIRONMENT = "POINTSLEDGER_INGEST_DELAY_S"
SERVE_ADDRESS_DEFAULT = "127.0.0.1:50051"
# service.defaults.group_wait_s_default in ms, for the help text: parsing must not import grpc
# (tests/test_cli_operator.py checks the two agree).
GROUP_WAIT_MS_DEFAULT = 4
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
    """Bad usage or a bad argument value found after parsing, before the ledger is touched (exit status 2)."""


class Failed(Exception):
    """The command failed for a reason that is not the ledger's (exit status 1, one line)."""


class Interrupted(Exception):
    """Ctrl-C, with what the command had done by then (exit status 130)."""


def data_directory(arguments):
    """--data; a path that is there but is not a directory is a bad argument value (exit status 2)."""
    path = arguments.data
    if os.path.exists(path) and not os.path.isdir(path):
        raise Usage(f"--data {path}: not a directory (the ledger is a directory)")
    return path


# --- opening the ledger ---------------------------------------------------------------------


def open_ledger(arguments, *, sync=True):
    """The ledger at --data, created with the example programme when it is new.

    Only the set-up commands (ingest, program set, serve) create a ledger.
    """
    return open_with_example_program(data_directory(arguments), sync=sync)


def open_existing_for_writing(arguments):
    """The ledger at --data, to write; refused when there is none: a refused request (an
    unknown member, say) must not leave a new ledger behind (SPEC §15)."""
    _require_store(data_directory(arguments))
    return open_with_example_program(data_directory(arguments))


def store_exists(path):
    return os.path.exists(os.path.join(path, "data.mdb"))


def open_existing(arguments):
    """The ledger at --data, read-only; refused when there is none (reads never create one)."""
    path = data_directory(arguments)
    _require_store(path)
    return Ledger(path, readonly=True)


def _require_store(path):
    if not store_exists(path):
        raise NotFound(f"no ledger at {os.path.abspath(path)} (`pointsledger ingest` or `serve` creates one)")


def one_line(text):
    return " ".join(str(text).split())
