"""SIGKILL a shard applier at random instants: the stream position is committed with its entries.

A forked process applies the messages of a seeded stream (batches of purchases, redemptions,
and some messages published twice) in runs of 1 to 4 messages, each run ONE transaction with
the stream sequence (ShardApplier), and is killed at a random delay. Afterwards the store
holds exactly the messages up to its stored sequence (its journal equals that of a reference
ledger fed those messages one by one), verify is clean, and redelivering the whole stream
changes nothing twice: the journal equals the reference's over the whole stream.
"""

import mmap
import os
import random
import signal
import struct
import time

import pytest

import pointsledger
from pointsledger.shards import commands, shard_of
from pointsledger.shards.applier import ShardApplier
from support import T_2026_03_15, entries, simple_program

T = T_2026_03_15  # 2026-03-15T00:00:00Z
MESSAGES = 30
RUNS = struct.Struct("<q")  # runs committed so far, in a page shared with the child
MEMBERS = [member for member in (f"m{index}" for index in range(40)) if shard_of(member, 2) == 0]


def stream(seed):
    """[(stream_seq, headers, payload)]: the seeded stream of shard 0 of 2, sequences with gaps
    (the other shard's messages), some messages published again later."""
    rng = random.Random(seed)
    messages, seq = [], 0
    for index in range(MESSAGES):
        seq += rng.randint(1, 3)
        if index and rng.random() < 0.15:
            _, headers, payload = messages[rng.randrange(len(messages))]  # a duplicate publish
        elif rng.random() < 0.2:
            member = rng.choice(MEMBERS)
            headers, payload = commands.redeem(f"r{index}", member, rng.randint(1, 30), T + index).encode("x")
        else:
            size = rng.choice([1, 20, 150, 400])
            rows = [(f"o{index}-{item}", rng.choice(MEMBERS), rng.randint(1, 9) * 1_000) for item in range(size)]
            headers, payload = commands.purchases([row[0] for row in rows], [row[1] for row in rows],
                                                  [row[2] for row in rows], ["x"] * size, [T] * size).encode("x")
        messages.append((seq, headers, payload))
    return messages


def new_ledger(path, engine_name, sync=True):
    ledger = pointsledger.Ledger(path, engine=engine_name, sync=sync)
    if not ledger.store.programs:
        ledger.set_program(simple_program())  # 1 point per 100 cents, no expiry
    return ledger


def reference(tmp_path, engine_name, seed):
    """The journal after each message, applied one at a time: {stream_seq: journal length}, journal."""
    ledger = new_ledger(tmp_path / f"reference-{seed}", engine_name, sync=False)
    applier = ShardApplier(ledger, "ORDERS", 0, 2)
    lengths = {0: 0}
    for message in stream(seed):
        applier.apply([message])
        lengths[message[0]] = ledger.last_seq()
    journal = entries(ledger)
    ledger.close()
    return lengths, journal


def consume(path, engine_name, seed, shared):
    rng = random.Random(seed + 7)
    ledger = new_ledger(path, engine_name)
    applier = ShardApplier(ledger, "ORDERS", 0, 2)
    messages = stream(seed)
    start = runs = 0
    while start < len(messages):
        size = rng.randint(1, 4)
        applier.apply(messages[start:start + size])
        start += size
        runs += 1
        RUNS.pack_into(shared, 0, runs)
    time.sleep(60)  # done: the parent kills a finished consumer too


def kill_once(tmp_path, engine_name, seed, lengths, journal):
    path = tmp_path / f"shard-{seed}"
    new_ledger(path, engine_name).close()
    shared = mmap.mmap(-1, RUNS.size)
    child = os.fork()
    if child == 0:
        try:
            consume(path, engine_name, seed, shared)
        finally:
            os._exit(3)
    # The kill lands after a random number of committed runs (about 12 in all), then at a random
    # instant of the next one: all along the stream, whatever the machine's speed.
    rng = random.Random(seed)
    after_runs = rng.randrange(13)
    deadline = time.monotonic() + 60
    while RUNS.unpack_from(shared)[0] < after_runs and time.monotonic() < deadline:
        time.sleep(0.0005)
    time.sleep(rng.uniform(0, 0.01))
    os.kill(child, signal.SIGKILL)
    _, status = os.waitpid(child, 0)
    assert os.WIFSIGNALED(status), status
    where = f"seed {seed} ({engine_name})"
    with new_ledger(path, engine_name) as ledger:
        applier = ShardApplier(ledger, "ORDERS", 0, 2)
        position = applier.position()
        assert entries(ledger) == journal[:lengths[position]], f"{where}: not the prefix through seq {position}"
        assert ledger.verify().ok, where
        applier.apply(stream(seed))  # everything redelivered
        assert entries(ledger) == journal, where
        assert applier.position() == max(lengths)
        assert ledger.verify().ok, where
    return position, max(lengths)


def run(tmp_path, engine_name, seeds):
    positions = []
    for seed in seeds:
        lengths, journal = reference(tmp_path, engine_name, seed)
        positions.append(kill_once(tmp_path, engine_name, seed, lengths, journal))
    return positions


def test_a_few_kills_leave_the_position_with_its_entries(tmp_path, engine_name):
    run(tmp_path, engine_name, range(4))


@pytest.mark.slow
def test_many_kills_leave_the_position_with_its_entries(tmp_path, engine_name):
    positions = run(tmp_path, engine_name, range(100, 115))
    # Kills landed all along the stream, not only before the first or after the last commit.
    assert len({position for position, last in positions if 0 < position < last}) >= 4, positions
