"""The `pointsledger` command (SPEC §11): one cmd_<verb> per command, over the Ledger API.

Conventions, for every command:
- `--data DIR` (or POINTSLEDGER_DATA) picks the ledger, default ./pointsledger-data;
  the set-up commands (ingest, program set, serve) create it with the example
  programme when it is new; every other command refuses (exit 1) when there is none.
- `--help` shows an example; `--json` prints one JSON document for scripts.
- Exit status (EXIT_STATUS_HELP, in every --help): 0 done; 1 the ledger refused
  or the command failed (a LedgerError, an unreadable file, problems found by
  verify); 2 bad usage or a bad argument value, found before the ledger is
  touched (argparse types, Usage); 3 an ingest that finished with rejected rows;
  130 interrupted.
- Errors go to stderr in one line that names the problem.
"""

import os
import sys

import lmdb

from ..errors import InvalidProgram, LedgerError
from .common import (
    EXIT_INTERRUPTED, EXIT_OK, EXIT_REFUSED, INGEST_DELAY_ENVIRONMENT, JOURNAL_FIELDS, Failed, Interrupted, one_line,
    Usage,
)
from .output import plural
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
        # The reader went away (`pointsledger export | head`): what it wanted it got. Stop
        # quietly; stdout goes to /dev/null so the interpreter's final flush cannot fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except InvalidProgram as error:
        problems = "; ".join(one_line(problem) for problem in error.problems)
        print(f"pointsledger: {error.code}: invalid programme, {plural(len(error.problems), 'problem')}: {problems}",
              file=sys.stderr)
        return EXIT_REFUSED
    except LedgerError as error:
        print(f"pointsledger: {error.code}: {one_line(error)}", file=sys.stderr)
        return EXIT_REFUSED
    except (Failed, OSError, lmdb.Error) as error:
        print(f"pointsledger: error: {one_line(error)}", file=sys.stderr)
        return EXIT_REFUSED
    except ImportError as error:  # serve / --server before the service is installed
        print(f"pointsledger: error: {one_line(error)}", file=sys.stderr)
        return EXIT_REFUSED
    except Interrupted as error:
        print(f"pointsledger: interrupted: {error}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("pointsledger: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
