"""The Cython engine's orders overlay (PackedOrders): a dict of order key -> record to the writer,
its records handed to the write packed in key order."""

import random

import pytest

from pointsledger import engine as engines
from test_flush_items import packed_pairs, random_keys

_engine_c = engines.ENGINES.get("cython")
pytestmark = pytest.mark.skipif(_engine_c is None, reason="the Cython engine is not built")


def test_ascending_keys_are_written_from_the_buffer_itself():
    orders = _engine_c.PackedOrders()
    orders[b"o1"] = b"aa"
    orders[b"o2"] = b"bbb"
    orders[b"o3"] = b""
    assert len(orders) == 3 and b"o2" in orders and b"o4" not in orders and b"o" not in orders
    assert [orders.get(b"o1"), orders[b"o2"], orders[b"o3"], orders.get(b"o0", b"none")] == [b"aa", b"bbb", b"", b"none"]
    orders[b"o2"] = b"BBB"  # rewritten in place (a refund's record is the same size)
    packed, count, first_key, last_key = orders.packed_records()
    assert packed is orders and (count, first_key, last_key) == (3, b"o1", b"o3")
    # Each record: u32 key size, u32 value size (native order), key, value.
    assert packed_pairs(packed, 3) == [(b"o1", b"aa"), (b"o2", b"BBB"), (b"o3", b"")]
    view = memoryview(packed)  # held by a flush's records: nothing may change
    with pytest.raises(BufferError):
        orders[b"o4"] = b"d"
    with pytest.raises(BufferError):
        orders[b"o1"] = b"AA"
    with pytest.raises(BufferError):
        del orders[b"o1"]
    view.release()
    orders[b"o4"] = b"d"
    assert orders.items() == [(b"o1", b"aa"), (b"o2", b"BBB"), (b"o3", b""), (b"o4", b"d")]


def test_keys_out_of_order_rewrites_and_deletes_are_sorted_into_a_new_buffer():
    orders = _engine_c.PackedOrders(8)
    for key in (b"k5", b"k2", b"k9", b"k10"):
        orders[key] = key + b"!"
    orders[b"k2"] = b"a longer record"  # moved to the end of the buffer
    del orders[b"k9"]
    assert list(orders) == [b"k5", b"k10", b"k2"]  # first put first, a moved record last
    assert orders.keys() == [b"k5", b"k10", b"k2"] and orders.values() == [b"k5!", b"k10!", b"a longer record"]
    packed, count, first_key, last_key = orders.packed_records()
    assert packed is not orders and (count, first_key, last_key) == (3, b"k10", b"k5")
    assert packed_pairs(packed, 3) == [(b"k10", b"k10!"), (b"k2", b"a longer record"), (b"k5", b"k5!")]
    with pytest.raises(KeyError):
        del orders[b"k9"]
    with pytest.raises(KeyError):
        orders[b"k9"]
    with pytest.raises(TypeError):
        orders["k5"] = b"x"
    orders.update([(bytearray(b"k1"), memoryview(b"one"))])  # bytes-like keys and values are copied
    assert orders[b"k1"] == b"one" and len(orders) == 4
    orders.clear()
    assert len(orders) == 0 and not orders and orders.packed_records() == (orders, 0, None, None)
    orders[b"z"] = b"1"
    assert orders.packed_records()[0] is orders  # in key order again after clear


@pytest.mark.parametrize("seed", range(4))
def test_it_behaves_as_the_dict_it_replaces(seed):
    """Random puts (ascending first, then any), rewrites of both sizes and deletes: the same
    contents as a dict, and its records are the dict's sorted items."""
    rng = random.Random(seed)
    keys = random_keys(rng, 3_000)
    ascending = sorted(keys[:1_000])
    orders, model = _engine_c.PackedOrders(rng.choice([0, 500])), {}
    for key in ascending[:rng.randrange(1_000)]:
        orders[key] = model[key] = b"%d" % rng.randrange(100)
    assert orders.packed_records()[0] is orders
    for _ in range(6_000):
        key = rng.choice(keys)
        action = rng.randrange(5)
        if action == 0 and key in model:
            del orders[key], model[key]
        elif action == 1 and key in model:
            orders[key] = model[key] = bytes(len(model[key]))  # the same size: in place
        else:
            orders[key] = model[key] = b"v" * rng.randrange(50)
    assert len(orders) == len(model)
    assert dict(orders.items()) == model and set(orders) == set(model)
    assert all(orders.get(key) == model.get(key) for key in keys)
    packed, count, first_key, last_key = orders.packed_records()
    expected = sorted(model.items())
    assert count == len(model) and packed_pairs(packed, count) == expected
    assert (first_key, last_key) == (expected[0][0], expected[-1][0])


def test_order_keys_the_writer_keeps_are_not_rewritten_by_the_next_purchase(tmp_path):
    """The engine rewrites an order key's bytes object for the next purchase only when nothing
    else holds it: the unchecked ids (below the largest so far: o5 stored, then o91) keep their keys."""
    import pointsledger
    from pointsledger.store import format as fmt
    from support import T_2026_03_10, simple_program

    with pointsledger.Ledger(tmp_path / "ledger", engine="cython") as ledger:
        ledger.set_program(simple_program())
        ledger.purchases(["o5"], ["m1"], [100], ["grocery"], [T_2026_03_10])
        seen = {}

        def apply(writer):
            ids = ["o1", "o91", "o2", "o9", "o3"]
            ledger.engine.apply_purchases(writer, ids, ["m1"] * 5, [100] * 5, ["grocery"] * 5, [T_2026_03_10] * 5)
            seen["unchecked"] = list(writer.unchecked_order_keys)
            seen["orders"] = list(writer.overlay[fmt.DB_ORDERS])

        ledger.store.write(apply)
        assert seen == {"unchecked": [b"o1", b"o2", b"o9", b"o3"], "orders": [b"o1", b"o91", b"o2", b"o9", b"o3"]}
        assert [ledger.purchases([order_id], ["m1"], [100], ["grocery"], [T_2026_03_10]).raw[0][0]
                for order_id in ("o1", "o91", "o9", "o4")] == ["DUPLICATE", "DUPLICATE", "DUPLICATE", "APPLIED"]
