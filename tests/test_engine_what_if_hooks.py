"""The engines' two what-if hooks (issue 13): writer.orders_kept and writer.dirty_members = None.

Both engines honour them the same way; with their defaults (None, a dict) nothing changes,
which every other test of the engines checks.
"""

from pointsledger.store import format as fmt
from support import T_2026_03_10, simple_program

WELCOME = {"welcome_bonus": 50}  # the engagement path (engagement.apply_purchase, apply_engaged_fast)


def replay(ledger, program, kept):
    """Three purchases in one scratch-like write: only `kept` orders recorded, no member marked."""
    ledger.set_program(program)

    def apply(writer):
        writer.orders_kept = kept
        writer.dirty_members = None
        return ledger.engine.apply_purchases(writer, ["o1", "o2", "o3"], ["m1", "m2", "m1"], [1_000, 2_500, 400],
                                             ["food", "food", "toys"], [T_2026_03_10] * 3)

    results = ledger.store.write(apply)
    with ledger.store.read() as txn:
        orders = {key: txn.get(key, db=ledger.store.dbs[fmt.DB_ORDERS]) is not None for key in (b"o1", b"o2", b"o3")}
        members = [key for key, _ in txn.cursor(db=ledger.store.dbs[fmt.DB_MEMBERS])]
    return [result[:3] for result in results], orders, members


def test_only_the_kept_orders_are_recorded_and_no_member_is_written(ledger):
    results, orders, members = replay(ledger, simple_program(), {b"o2"})

    assert [(status, points) for status, _, points in results] == [("APPLIED", 10), ("APPLIED", 25), ("APPLIED", 4)]
    assert orders == {b"o1": False, b"o2": True, b"o3": False}
    assert members == []
    # The members are in the member cache: m1's second purchase found its first one's state.
    assert ledger.store.member_cache[b"m1"].balance == 14


def test_the_engagement_path_honours_them_too(ledger):
    results, orders, members = replay(ledger, simple_program(**WELCOME), {b"o1", b"o3"})

    assert [(status, points) for status, _, points in results] == [("APPLIED", 10), ("APPLIED", 25), ("APPLIED", 4)]
    assert orders == {b"o1": True, b"o2": False, b"o3": True}
    assert members == []
    assert ledger.store.member_cache[b"m1"].balance == 10 + 50 + 4


def test_a_large_batch_marks_no_member_either(ledger):
    # From 1,024 purchases the Cython engine sizes its overlays up front: a None dirty_members
    # must stay None there too (a merge once turned it back into a dict, and the what-if wrote
    # every member record again).
    ledger.set_program(simple_program())
    count = 2_000
    order_ids = [f"o{index}" for index in range(count)]

    def apply(writer):
        writer.orders_kept = set()
        writer.dirty_members = None
        results = ledger.engine.apply_purchases(writer, order_ids, [f"m{index % 7}" for index in range(count)],
                                                [1_000] * count, ["food"] * count, [T_2026_03_10] * count)
        assert writer.dirty_members is None
        return results

    results = ledger.store.write(apply)
    assert [result[2] for result in results] == [10] * count
    with ledger.store.read() as txn:
        assert [key for key, _ in txn.cursor(db=ledger.store.dbs[fmt.DB_MEMBERS])] == []
        assert [key for key, _ in txn.cursor(db=ledger.store.dbs[fmt.DB_ORDERS])] == []
    assert ledger.store.member_cache[b"m0"].balance == 10 * len(range(0, count, 7))
