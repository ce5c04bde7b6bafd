"""The what-if (SPEC §16, §17): re-price a period's purchases and refunds under a draft programme.

`simulate` reads one snapshot of the ledger and replays, in journal order,
every purchase and refund with time from 1 January of the year before `from`
up to `to` through the engine in use, twice, in two scratch stores: once with
the draft as the only programme, once with the recorded programme versions
(only for the tier each purchase was recorded at: the journal does not keep
it). Points on the recorded side are the journal's own entries. Only events
in [from, to) are counted. See docs/design.md, *The what-if*.
"""

from .. import calendar, limits, program as programs
from .._engine_py import validate_time
from ..errors import InvalidArgument, InvalidProgram
from .results import Comparison, Figures, SimulationResult, Tally
from .scratch import Scratch
from .source import Source

__all__ = ["Comparison", "Figures", "SimulationResult", "compile_draft", "simulate"]

BATCH_PURCHASES = 50_000


def compile_draft(draft):
    """(the draft's document, compiled as version 1); every problem listed as set_program lists them."""
    parsed = programs.parse_document(draft)
    if isinstance(parsed, dict):
        parsed = {key: value for key, value in parsed.items() if key != "effective_from"}  # ignored (§17)
    problems, _ = programs.validate(parsed)
    if problems:
        raise InvalidProgram(problems)
    return parsed, programs.compile_program(parsed, 1, limits.time_s_min)


def check_period(from_s, to_s):
    from_s = validate_time("from_s", from_s)
    to_s = validate_time("to_s", to_s)
    if to_s <= from_s:
        raise InvalidArgument("to_s", to_s, f"must be after from_s ({from_s})")
    return from_s, to_s


def simulate(store, engine, draft, from_s, to_s, *, progress=None, scratch_dir=None):
    """The SimulationResult of `draft` over [from_s, to_s) (see the module's doc).

    progress(seq_read, last_seq) is called after each batch. scratch_dir: where
    the scratch stores go (default: the system's temporary directory).
    """
    from_s, to_s = check_period(from_s, to_s)
    document, draft_program = compile_draft(draft)
    replay_from_s = calendar.year_start(calendar.year_of(from_s) - 1)
    with store.read() as txn:
        source = Source(store, txn, replay_from_s, to_s)
        with Scratch(engine, [(limits.time_s_min, document)], scratch_dir) as draft_side, \
                Scratch(engine, source.program_records(), scratch_dir) as recorded_side:
            tally = Tally(from_s, draft_program, recorded_side.programs, source.refunded_orders,
                          source.category_name)
            for side in (draft_side, recorded_side):
                side.register_referrals(source.referrals)
            for batch, seq in source.batches(BATCH_PURCHASES):
                tally.add(batch, draft_side.apply(batch), recorded_side.apply(batch))
                draft_side.release_mapped_pages()
                recorded_side.release_mapped_pages()
                if progress is not None:
                    progress(seq, source.last_seq)
    return tally.result(to_s, replay_from_s, engine.ENGINE_NAME)
