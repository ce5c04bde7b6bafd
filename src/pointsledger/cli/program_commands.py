"""program set / program show."""

import json
import sys

from .. import program
from .common import EXIT_OK, open_existing, open_ledger
from .output import emit, format_time, print_json


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
