"""The what-if (SPEC §16, §17): re-price a period's purchases and refunds under a draft programme.

`simulate` reads one snapshot of the ledger and replays, in journal order,
every purchase and refund with time from 1 January of the year before `from`
up to `to` through the engine in use, in a scratch store with the draft as
the only programme; and, when the draft's tier thresholds differ from a
recorded version's, a second time in another scratch store with the recorded
versions (only for the tier each purchase was recorded at: the journal does
not keep it). Points on the recorded side are the journal's own entries. Only events
in [from, to) are counted. See docs/design.md, *The what-if*.
"""

import contextlib

from .. import calendar, limits, program as programs
from ..validation import validate_time
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


class _TiersDiverged(Exception):
    """The draft refused a purchase the recorded programme took: their spends part, so must their tiers."""


def simulate(store, engine, draft, from_s, to_s, *, progress=None, scratch_dir=None):
    """The SimulationResult of `draft` over [from_s, to_s) (see the module's doc).

    progress(seq_read, last_seq) is called after each batch. scratch_dir: where
    the scratch stores go (default: the system's temporary directory).
    """
    document, draft_program = compile_draft(draft)  # §15: the first bad field in argument order is named
    from_s, to_s = check_period(from_s, to_s)
    replay_from_s = calendar.year_start(calendar.year_of(from_s) - 1)
    with store.read() as txn:
        source = Source(store, txn, replay_from_s, to_s)
        recorded_programs = [programs.compile_program(programs.parse_document(text), version, effective_from_s)
                             for version, (effective_from_s, text) in enumerate(source.program_records(), 1)]
        # Tier ranks follow from spend and thresholds only (§4): when every recorded
        # version has the draft's thresholds, the draft's replay gives the recorded
        # tiers too, and the second replay is not needed.
        same_tiers = all(program.tier_min_spend_minor == draft_program.tier_min_spend_minor
                         for program in recorded_programs)
        if same_tiers:
            try:
                return _replay(source, engine, document, draft_program, recorded_programs, from_s, to_s,
                               replay_from_s, progress, scratch_dir, one_replay=True)
            except _TiersDiverged:
                source = Source(store, txn, replay_from_s, to_s)
        return _replay(source, engine, document, draft_program, recorded_programs, from_s, to_s,
                       replay_from_s, progress, scratch_dir, one_replay=False)


def _replay(source, engine, document, draft_program, recorded_programs, from_s, to_s, replay_from_s,
            progress, scratch_dir, one_replay):
    tally = Tally(from_s, draft_program, recorded_programs, source.refunded_orders, source.category_list)
    with contextlib.ExitStack() as stack:
        draft_side = stack.enter_context(Scratch(engine, [(limits.time_s_min, document)], source.refunded_orders, scratch_dir))
        sides = [draft_side]
        if not one_replay:
            sides.append(stack.enter_context(Scratch(engine, source.program_records(), source.refunded_orders, scratch_dir)))
        for side in sides:
            side.register_referrals(source.referrals)
        for batch, seq in source.batches(BATCH_PURCHASES):
            outcomes = [side.apply(batch) for side in sides]
            if one_replay and not all(outcomes[0].applied):
                raise _TiersDiverged()
            tally.add(batch, outcomes[0], outcomes[-1])
            # RSS: the pages read through the maps, the ledger's and the scratch's, are page
            # cache the kernel may drop, not memory the replay holds (Store.release_mapped_pages).
            source.store.release_mapped_pages()
            for side in sides:
                side.release_mapped_pages()
            if progress is not None:
                progress(seq, source.last_seq)
    return tally.result(to_s, replay_from_s, engine.ENGINE_NAME)
