"""simulate: the what-if of SPEC §16 (a draft programme against what was recorded)."""

import os
import sys

from .common import EXIT_OK, open_existing, Usage
from .output import format_time, plural, print_json

COLUMNS = ("earned", "bonus", "clawed back", "net", "value")
LABEL_WIDTH = 24
NUMBER_WIDTH = 14
# A bar only for a run long enough to watch (tqdm shows nothing before this many seconds).
PROGRESS_DELAY_S = 2.0


def cmd_simulate(arguments):
    if arguments.to_time <= arguments.from_time:
        raise Usage(f"--to must be after --from (the period is [--from, --to)): "
                    f"{format_time(arguments.to_time)} is not after {format_time(arguments.from_time)}")
    text = _read_draft(arguments.draft)
    with open_existing(arguments) as ledger:
        with _Progress(arguments.json) as progress:
            result = ledger.simulate(text, arguments.from_time, arguments.to_time, progress=progress.update,
                                     scratch_dir=arguments.scratch_dir)
    if arguments.json:
        print_json(result.to_dict())
    else:
        print_table(result, arguments.draft)
    return EXIT_OK


def _read_draft(path):
    if path == "-":
        return sys.stdin.read()
    if not os.path.exists(path):
        raise Usage(f"{path}: no such file")
    if os.path.isdir(path):
        raise Usage(f"{path}: a directory, not a programme (JSON) file")
    with open(path, encoding="utf-8") as handle:
        return handle.read()


class _Progress:
    """A tqdm bar over the journal on a terminal, for long runs; nothing otherwise (or with --json)."""

    def __init__(self, quiet):
        self.quiet = quiet or not sys.stderr.isatty()
        self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self.bar is not None:
            self.bar.close()

    def update(self, seq_read, last_seq):
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=last_seq, unit=" entries", unit_scale=True, file=sys.stderr,
                            desc="simulate", delay=PROGRESS_DELAY_S)
        self.bar.update(seq_read - self.bar.n)


def print_table(result, draft_name):
    currency = result.currency
    print(f"What-if: {draft_name} against what was recorded, events from {_day(result.from_s)} "
          f"up to {_day(result.to_s)}")
    print(f"  {plural(result.purchases, 'purchase')} and {plural(result.refunds, 'refund')} counted, "
          f"replayed from {_day(result.replay_from_s)} (engine {result.engine})")
    print(f"  value: recorded points at their version's point value, draft points at "
          f"{result.point_value} {currency}")
    if result.refused:
        print(f"  {plural(result.refused, 'purchase')} refused under the draft (no draft points)")
    print()
    print(_row("", [*COLUMNS[:-1], f"{COLUMNS[-1]} ({currency})"]))
    print("total")
    _comparison(result.total)
    print("by tier, draft")
    for name, figures in result.draft_tiers.items():
        print(_figures(f"  {name}", figures))
    print("by tier, recorded")
    for name, figures in result.recorded_tiers.items():
        print(_figures(f"  {name}", figures))
    print("by category")
    for name, comparison in result.categories.items():
        print(f"  {name}")
        _comparison(comparison, indent="    ")


def _comparison(comparison, indent="  "):
    print(_figures(f"{indent}draft", comparison.draft))
    print(_figures(f"{indent}recorded", comparison.recorded))
    print(_row(f"{indent}difference", ["", "", "", f"{comparison.difference:+,}", _money(comparison.difference_value, True)]))


def _figures(label, figures):
    return _row(label, [f"{figures.earned:,}", f"{figures.bonus:,}", f"{figures.clawed_back:,}",
                        f"{figures.net:,}", _money(figures.value)])


def _row(label, cells):
    return f"{label:<{LABEL_WIDTH}}" + "".join(f"{cell:>{NUMBER_WIDTH}}" for cell in cells)


def _money(value, signed=False):
    return f"{value:+,}" if signed else f"{value:,}"


def _day(time_s):
    text = format_time(time_s)
    return text[:10] if text.endswith("T00:00:00Z") else text
