"""writer.dirty_members across several engine calls of one writer (the service's group commit).

The Cython engine lists each member once per writer (DirtyMembers), where the twin keeps a
dict: both write one record per member, the last state, byte-identical.
"""

import pytest

from pointsledger import engine as engines, operations
from support import T_2026_03_10, dump_ledger, simple_program

T = T_2026_03_10


def batches_and_a_redemption(ledger):
    """In ONE write: purchases of m1 and m2, a redemption of m1 (the twin's writer.mark_dirty),
    then purchases of m1 and m3; the keys marked, as the writer holds them before the commit."""
    ledger.set_program(simple_program())

    def apply(writer):
        ledger.engine.apply_purchases(writer, ["o1", "o2"], ["m1", "m2"], [1_000, 2_500], ["food"] * 2, [T] * 2)
        operations.redeem(writer, "r1", "m1", 5, T)
        ledger.engine.apply_purchases(writer, ["o3", "o4"], ["m1", "m3"], [400, 1_000], ["food"] * 2, [T] * 2)
        return len(writer.dirty_members), sorted(writer.dirty_members)

    return ledger.store.write(apply)


def test_each_member_is_written_once_with_its_last_state(ledger, open_ledger):
    assert batches_and_a_redemption(ledger) == (3, [b"m1", b"m2", b"m3"])
    # m1: 1,000 cents earn 10, 5 redeemed, 400 cents earn 4: 9; m2: 25; m3: 10.
    assert [ledger.balance(member, T).balance for member in ("m1", "m2", "m3")] == [9, 25, 10]
    assert ledger.verify().ok
    twin = open_ledger("twin", engine="python")
    batches_and_a_redemption(twin)
    assert dump_ledger(ledger) == dump_ledger(twin)


def test_a_batch_after_the_twins_marks_keeps_them(ledger):
    # The writer's first marks come from the twin's code (its dict); the engine's batch takes them over.
    ledger.set_program(simple_program())
    ledger.purchases(["o1"], ["m1"], [1_000], ["food"], [T])

    def apply(writer):
        operations.adjust(writer, "a1", "m1", 7, "goodwill", T)
        ledger.engine.apply_purchases(writer, ["o2", "o3"], ["m2", "m1"], [2_500, 300], ["food"] * 2, [T] * 2)
        return sorted(writer.dirty_members)

    assert ledger.store.write(apply) == [b"m1", b"m2"]
    # m1: 10 + 7 adjusted + 3; m2: 25.
    assert [ledger.balance(member, T).balance for member in ("m1", "m2")] == [20, 25]
    assert ledger.verify().ok


_engine_c = engines.ENGINES.get("cython")


@pytest.mark.skipif(_engine_c is None, reason="the Cython engine is not built")
def test_the_last_state_marked_for_a_key_is_packed_as_a_dict_keeps_it():
    states = [_engine_c.MemberState(2026) for _ in range(3)]
    for number, state in enumerate(states):
        state.balance = 10 * (number + 1)
    dirty = _engine_c.DirtyMembers()
    assert not dirty and len(dirty) == 0
    dirty[b"m2"] = states[0]
    dirty[b"m1"] = states[1]
    dirty[b"m2"] = states[0]  # the same state again: listed once
    dirty[b"m2"] = states[2]  # another state for the key: it replaces the first, as in a dict
    expected = {b"m1": states[1], b"m2": states[2]}
    assert len(dirty) == 2 and bool(dirty) and sorted(dirty) == [b"m1", b"m2"]
    assert dirty[b"m2"] is states[2] and b"m1" in dirty and b"m3" not in dirty
    packed, count, first_key, last_key = _engine_c.pack_members(dirty)
    packed_dict, count_dict, _, _ = _engine_c.pack_members(expected)
    assert (count, first_key, last_key) == (2, b"m1", b"m2") and count_dict == 2
    assert bytes(memoryview(packed)) == bytes(memoryview(packed_dict))
    assert [(bytes(key), bytes(value)) for key, value in _engine_c.member_items(dirty)] == [
        (bytes(key), bytes(value)) for key, value in _engine_c.member_items(expected)]
