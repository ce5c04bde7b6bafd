"""The `pointsledger` command (SPEC §11): one cmd_<verb> per command, over the Ledger API.

Conventions, for every command:
- `--data DIR` (or POINTSLEDGER_DATA) picks the ledger, default ./pointsledger-data;
  commands that write create it with the example programme when it is new.
- `--help` shows an example; `--json` prints one JSON document for scripts.
- Exit status: 0 success, 1 refused or failed (a LedgerError, an unreadable
  file, rows rejected by ingest, problems found by verify), 2 bad usage.
- Errors go to stderr in one line that names the problem.
"""

import os
import sys

import lmdb

from ..errors import InvalidProgram, LedgerError
from .common import EXIT_INTERRUPTED, EXIT_REFUSED, INGEST_DELAY_ENVIRONMENT, JOURNAL_FIELDS, one_line, Usage
from .parser import build_parser

__all__ = ["main", "build_parser", "INGEST_DELAY_ENVIRONMENT", "JOURNAL_FIELDS"]


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
