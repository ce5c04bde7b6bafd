"""program set / program show."""

import json
import os
import sys

from .. import program
from .common import EXIT_OK, data_directory, open_existing, open_ledger, store_exists, Usage
from .output import emit, format_time, print_json


def cmd_program_set(arguments):
    if arguments.file == "-":
        text = sys.stdin.read()
    else:
        if not os.path.exists(arguments.file):
            raise Usage(f"{arguments.file}: no such file")
        if os.path.isdir(arguments.file):
            raise Usage(f"{arguments.file}: a directory, not a programme (JSON) file")
        with open(arguments.file, encoding="utf-8") as handle:
            text = handle.read()
    if not store_exists(data_directory(arguments)):
        _refuse_invalid(text)  # a refused document must not leave a new ledger behind
    with open_ledger(arguments) as ledger:
        version = ledger.set_program(text, arguments.effective_from)
        stored = ledger.get_program(version)
    emit(arguments, {"version": version, "effective_from_s": stored.effective_from_s}, ("effective_from_s",))
    return EXIT_OK


def _refuse_invalid(text):
    """The checks set_program makes on the document itself, before anything is created."""
    problems, _ = program.validate(program.parse_document(text))
    if problems:
        raise program.InvalidProgram(problems)


def cmd_program_show(arguments):
    with open_existing(arguments) as ledger:
        stored = ledger.get_program(arguments.version)
    # Canonical JSON keeps multipliers exact; its numbers print as the decimals they are.
    document = json.loads(program.canonical_json(stored.document))
    if arguments.json:
        print_json({"version": stored.version, "effective_from_s": stored.effective_from_s, "document": document})
    else:
        # stdout is the document alone, so `program show > p.json` gives what `program set p.json` takes;
        # which version it is goes to stderr, for the reader at a terminal.
        print(f"# version {stored.version}, effective from {format_time(stored.effective_from_s)}", file=sys.stderr)
        print(json.dumps(document, indent=2, sort_keys=True))
    return EXIT_OK
