"""The (key, value) streams flush hands to putmulti come in LMDB key order, in both engines."""

import random

import pytest

from pointsledger import engine as engines
from pointsledger.engine.member_engagement import Engagement


def random_keys(rng, count):
    keys = set()
    while len(keys) < count:
        shape = rng.randrange(4)
        if shape == 0:  # member ids: 7 bytes, one shared first byte
            keys.add(b"m%06d" % rng.randrange(1_000_000))
        elif shape == 1:  # sharing their first 8 bytes: ordered past the prefix
            keys.add(b"samepref" + bytes(rng.randrange(256) for _ in range(rng.randrange(4))))
        elif shape == 2:  # shorter than 8 bytes, prefixes of each other
            keys.add(bytes(rng.randrange(3) for _ in range(rng.randrange(4))))
        else:
            keys.add(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 20))))
    return list(keys)


@pytest.mark.parametrize("engine_name", sorted(engines.ENGINES))
@pytest.mark.parametrize("count", [0, 1, 7, 511, 512, 4_000])
def test_sorted_items_are_in_key_order(engine_name, count):
    engine = engines.ENGINES[engine_name]
    rng = random.Random(count)
    overlay = {key: b"v%d" % number for number, key in enumerate(random_keys(rng, count))}
    streamed = [(bytes(key), bytes(value)) for key, value in engine.sorted_items(overlay)]
    assert streamed == sorted(overlay.items())


_engine_c = engines.ENGINES.get("cython")
needs_c_engine = pytest.mark.skipif(_engine_c is None, reason="the Cython engine is not built")


def packed_pairs(packed, count):
    """The (key, value) pairs of packed records, as both Records implementations read them."""
    from pointsledger.store import put as store_put
    lists = store_put.ListRecords()
    lists.add_packed(b"x", packed, count)
    pairs = lists.pairs(0)
    if store_put._lmdb_batch is not None:
        records = store_put._lmdb_batch.Records()
        records.add_packed(b"x", packed, count)
        assert records.pairs(0) == pairs
    return pairs


@needs_c_engine
@pytest.mark.parametrize("count", [0, 1, 300, 4_000])
def test_packed_member_records_are_member_items(count):
    """pack_members (each state encoded straight into one buffer) gives member_items' records."""
    rng = random.Random(count)
    dirty = {}
    for number, key in enumerate(random_keys(rng, count)):
        state = _engine_c.MemberState(2026)
        state.balance = number * 7
        state.last_seq = number
        for bucket in range(number % 4):  # 0 to 3 expiry buckets
            state.credit(number + bucket + 1, 1_800_000_000 + bucket * 2_678_400, {}, 24_300 + bucket)
        if number % 7 == 3:  # an engagement state in its Python form: encoded after the buckets
            state.engagement = Engagement(2026, number)
            state.engagement.reached = [b"ms-%d" % number]
        dirty[key] = state
    packed, packed_count, first_key, last_key = _engine_c.pack_members(dirty)
    expected = [(bytes(key), bytes(value)) for key, value in _engine_c.member_items(dirty)]
    assert packed_count == count
    assert packed_pairs(packed, count) == expected
    assert (first_key, last_key) == ((expected[0][0], expected[-1][0]) if expected else (None, None))


@needs_c_engine
def test_a_packed_journal_reads_as_the_list_of_its_values():
    journal = _engine_c.PackedJournal(41)
    values = [b"", b"v1", bytes(range(256)) * 3]
    for value in values:
        journal.append(value)
    assert len(journal) == 3 and bool(journal)
    assert [journal[0], journal[1], journal[2], journal[-1]] == [values[0], values[1], values[2], values[2]]
    assert list(journal) == values
    with pytest.raises(IndexError):
        journal[3]
    assert packed_pairs(journal, 3) == [((41 + index).to_bytes(8, "big"), value) for index, value in enumerate(values)]
    view = memoryview(journal)  # exported (as a flush's records hold it): it cannot grow
    with pytest.raises(BufferError):
        journal.append(b"more")
    view.release()
    journal.append(b"more")
    assert journal[3] == b"more"


def test_packed_records_that_do_not_fill_their_buffer_are_refused():
    from pointsledger.store import put as store_put
    record = (3).to_bytes(4, "little") + (2).to_bytes(4, "little") + b"keyvv"
    with pytest.raises(ValueError):
        store_put.ListRecords().add_packed(b"x", record[:-1], 1)
    with pytest.raises(ValueError):
        store_put.ListRecords().add_packed(b"x", record, 2)
    if store_put._lmdb_batch is not None:
        for packed, count in ((record[:-1], 1), (record, 2)):
            records = store_put._lmdb_batch.Records()
            records.add_packed(b"x", packed, count)
            with pytest.raises(ValueError):
                records.pairs(0)
