"""Real kills at random instants (SPEC §9): SIGKILL a process writing batches at a random delay.

Each kill: a fresh store, a forked writer ingesting batches of varied sizes
(some with a duplicate inside the batch, some stores with a small map that must
grow), synced or relaxed, killed at a random instant: in the engine, inside
the commit (the fsync of a synced commit is most of a batch's time), between
batches. Afterwards the store holds whole batches, in order, at least every
acknowledged one; verify() is clean; resending every batch the writer began
applies each missing item exactly once.

A shared page tells where the writer was when the kill landed (the write path's
fault points mark the commit), so the test can require that some kills landed
inside a commit. The fast tier keeps a few kills; the `slow` tier (`--slow`)
makes at least 200 across its cases.
"""

import mmap
import os
import random
import signal
import struct
import time

import pytest

import pointsledger
from pointsledger.store import faults
from support import T_2026_03_15, entries, simple_program

T = T_2026_03_15  # 2026-03-15T00:00:00Z
MEMBERS = 37
PHASE_WRITING, PHASE_IN_COMMIT, PHASE_ACKNOWLEDGED = 1, 2, 3
PHASE = struct.Struct("<qq")  # (phase, acknowledged batches), in a page shared with the writer


def batch(seed, index):
    """Batch `index` of the run: its columns and how many journal entries it makes."""
    rng = random.Random(seed * 1_000_003 + index)
    size = rng.choice([1, 3, 40, 150, 600])
    order_ids = [f"b{index}-{item}" for item in range(size)]
    members = [f"m{(index * 7 + item) % MEMBERS}" for item in range(size)]
    if size > 1 and rng.random() < 0.3:
        copy = rng.randrange(1, size)  # a duplicate inside the batch: item 0 again
        order_ids[copy], members[copy] = order_ids[0], members[0]
    unique = list(dict.fromkeys(order_ids))
    return (order_ids, members, [1_000] * size, ["x"] * size, [T] * size), unique


def writer(path, engine_name, sync, map_size, seed, shared):
    """The writing process: batches until killed; the shared page says where it is."""
    def mark(point):
        if point == "commit":
            PHASE.pack_into(shared, 0, PHASE_IN_COMMIT, PHASE.unpack_from(shared)[1])

    faults.hook = mark
    ledger = pointsledger.Ledger(path, engine=engine_name, sync=sync, map_size_bytes=map_size)
    index = 0
    while True:
        PHASE.pack_into(shared, 0, PHASE_WRITING, index)
        ledger.purchases(*batch(seed, index)[0])
        index += 1
        PHASE.pack_into(shared, 0, PHASE_ACKNOWLEDGED, index)


def kill_once(tmp_path, engine_name, sync, seed):
    """One store, one writer killed at a random delay; checks the store; returns the phase at the kill."""
    rng = random.Random(seed)
    path = tmp_path / f"ledger-{seed}"
    map_size = rng.choice([None, None, 64 * 1024])
    with pointsledger.Ledger(path, engine=engine_name, sync=False) as ledger:
        ledger.set_program(simple_program())  # 1,000 cents → 10 points, no expiry
    shared = mmap.mmap(-1, PHASE.size)
    child = os.fork()
    if child == 0:  # the child never returns into pytest
        try:
            writer(path, engine_name, sync, map_size, seed, shared)
        finally:
            os._exit(3)
    time.sleep(rng.uniform(0, 0.08 if sync else 0.04))
    os.kill(child, signal.SIGKILL)
    _, status = os.waitpid(child, 0)
    phase, acknowledged = PHASE.unpack_from(shared)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
        f"seed {seed}: the writer ended by itself (status {status}) before the kill")
    check_committed_prefix(path, engine_name, seed, acknowledged, phase)
    return phase


def check_committed_prefix(path, engine_name, seed, acknowledged, phase=None):
    # The phase is in the message because of one unexplained failure ("16 committed, 0
    # acknowledged", seed 1054, cython-synced, once in many runs): the next one should say more.
    where = f"seed {seed} ({engine_name}, {acknowledged} batches acknowledged, phase {phase})"
    with pointsledger.Ledger(path, engine=engine_name) as ledger:
        report = ledger.verify()
        assert report.ok, (where, report.problems)
        # Whole batches, in order: the journal's order ids are those of batches 0..committed-1.
        journal = [entry[3] for entry in entries(ledger)]
        expected, committed = [], 0
        while len(expected) < len(journal):
            expected += batch(seed, committed)[1]
            committed += 1
        assert journal == expected, f"{where}: the journal is not whole batches in order"
        assert acknowledged <= committed <= acknowledged + 1, f"{where}: {committed} batches committed"
        # Resend every batch the writer began: the missing one applies, nothing twice.
        began = acknowledged + 1
        applied = duplicates = 0
        for index in range(began):
            results = ledger.purchases(*batch(seed, index)[0])
            applied += results.applied
            duplicates += results.duplicates
        missing = sum(len(batch(seed, index)[1]) for index in range(committed, began))
        items = sum(len(batch(seed, index)[0][0]) for index in range(began))
        assert (applied, duplicates) == (missing, items - missing), where
        assert ledger.last_seq() == len(journal) + missing, where
        # Each purchase earns 10 points: the balances add up to 10 per journal entry.
        balances = sum(balance_or_zero(ledger, f"m{member}") for member in range(MEMBERS))
        assert balances == 10 * ledger.last_seq(), where
        report = ledger.verify()
        assert report.ok, (where, report.problems)


def balance_or_zero(ledger, member_id):
    try:
        return ledger.balance(member_id, T).balance
    except pointsledger.NotFound:
        return 0


def run_kills(tmp_path, engine_name, sync, count, first_seed):
    phases = [kill_once(tmp_path, engine_name, sync, seed) for seed in range(first_seed, first_seed + count)]
    return phases


@pytest.mark.parametrize("sync", [True, False], ids=["synced", "relaxed"])
def test_a_few_random_kills_leave_committed_prefixes(tmp_path, engine_name, sync):
    run_kills(tmp_path, engine_name, sync, count=5, first_seed=1)


@pytest.mark.slow
@pytest.mark.parametrize("sync", [True, False], ids=["synced", "relaxed"])
def test_many_random_kills_leave_committed_prefixes(tmp_path, engine_name, sync):
    phases = run_kills(tmp_path, engine_name, sync, count=55, first_seed=1_000)
    # 4 cases x 55 = 220 kills. A synced commit's fsync is most of a batch's time,
    # so many kills land inside one (measured: about half).
    if sync:
        assert phases.count(PHASE_IN_COMMIT) >= 5, phases
