"""Stores written by an earlier release stay readable, and category codes are wide (issue 8).

tests/fixtures/store-format-1/data.mdb was written by the release whose
category codes were two bytes (commit 5ee5b79; tests/fixtures/make_store_format_1.py
says how). Each test opens a copy of it.
"""

import importlib.util
import shutil
from pathlib import Path

import lmdb
import pytest

import pointsledger
from pointsledger.store import format as fmt
from support import dump_ledger, entries

FIXTURES = Path(__file__).parent / "fixtures"
T_2026_03_15 = 1_773_532_800  # 2026-03-15T00:00:00Z
T_2026_04_01 = 1_775_001_600  # 2026-04-01T00:00:00Z

# The journal the old release wrote (points by hand from the example programme):
# o-1 12,345 grocery → 123; o-2 50,000 electronics ×2 → 1,000; o-3 gift_cards ×0 → 0;
# o-4 7,000 → 70; o-5 100,000 toys → 1,000; o-6 999 books → 9 … the member of o-6 is
# silver by then (spend 100,000): floor(999 × 1.25 / 100) = 12; r-1 refunds 10,000 of
# o-2: floor(1,000 × 10,000 / 50,000) = 200; rd-1 redeems 50; adj-1 adds 25.
FIXTURE_JOURNAL = [
    (1, "EARN", "m-1", "o-1", 123, 123, T_2026_03_15, 1),
    (2, "EARN", "m-1", "o-2", 1000, 1123, T_2026_03_15, 1),
    (3, "EARN", "m-2", "o-3", 0, 0, T_2026_03_15, 1),
    (4, "EARN", "m-2", "o-4", 70, 70, T_2026_03_15, 1),
    (5, "EARN", "m-3", "o-5", 1000, 1000, T_2026_03_15, 1),
    (6, "EARN", "m-3", "o-6", 12, 1012, T_2026_03_15, 1),
    (7, "CLAWBACK", "m-1", "r-1", -200, 923, T_2026_04_01, 1),
    (8, "REDEEM", "m-3", "rd-1", -50, 962, T_2026_04_01, 1),
    (9, "ADJUST", "m-2", "adj-1", 25, 95, T_2026_04_01, 1),
]


def copy_fixture(tmp_path, name="ledger"):
    target = tmp_path / name
    target.mkdir()
    shutil.copy(FIXTURES / "store-format-1" / "data.mdb", target / "data.mdb")
    return target


def build_fixture_operations(path):
    """The operations the fixture was built with, run by this release on a new store
    (on the python engine, as then; both engines write the same bytes)."""
    spec = importlib.util.spec_from_file_location("make_store_format_1", FIXTURES / "make_store_format_1.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build(path)


def stored_format(ledger):
    with ledger.store.read() as txn:
        return fmt.U32.unpack(txn.get(fmt.META_FORMAT, db=ledger.store.dbs[fmt.DB_META]))[0]


def raw(ledger, db_name, key):
    with ledger.store.read() as txn:
        return txn.get(key, db=ledger.store.dbs[db_name])


def continue_the_old_store(ledger):
    """Purchases, refunds and duplicates over the old store; (expected results, actual)."""
    outcomes = [
        ledger.purchase("o-1", "m-1", 12_345, "grocery", T_2026_03_15),  # resent: the old order
        ledger.purchase("o-7", "m-2", 5_000, "grocery", T_2026_04_01),  # an old category (code 0)
        ledger.purchase("o-8", "m-2", 3_000, "garden", T_2026_04_01),  # a new one: code 5
        ledger.refund("r-2", "o-2", 10_000, T_2026_04_01),  # an old order, rewritten
        ledger.refund("r-3", "o-8", 1_000, T_2026_04_01),
        ledger.redeem("rd-1", "m-3", 50, T_2026_04_01),  # resent: the old redemption
    ]
    return [(each.status, each.seq, each.points, each.balance) for each in outcomes]


# m-2 is a plain member (spend 27,000): o-7 5,000 → 50 (95 → 145); o-8 3,000 → 30 (→ 175).
# r-2: floor(1,000 × 20,000 / 50,000) − 200 clawed already = 200 (m-1 923 → 723).
# r-3: floor(30 × 1,000 / 3,000) = 10 (m-2 175 → 165).
CONTINUED = [
    ("DUPLICATE", 1, 123, 123),
    ("APPLIED", 10, 50, 145),
    ("APPLIED", 11, 30, 175),
    ("APPLIED", 12, -200, 723),
    ("APPLIED", 13, -10, 165),
    ("DUPLICATE", 8, -50, 962),
]


def test_a_store_of_the_two_byte_release_opens_and_continues(tmp_path, engine_name):
    path = copy_fixture(tmp_path)
    with pointsledger.Ledger(path, engine=engine_name) as ledger:
        assert entries(ledger) == FIXTURE_JOURNAL
        assert ledger.category_count() == 5
        assert stored_format(ledger) == 5  # upgraded at this writable open: lots by issue month, counters by version (§19)
        assert continue_the_old_store(ledger) == CONTINUED
        assert ledger.category_count() == 6
        # Codes below 2^16 keep two bytes: old and new orders have one layout.
        assert raw(ledger, fmt.DB_ORDERS, b"o-8") == fmt.ORDER_HEAD.pack(3_000, T_2026_04_01, 11, 1_000, 10) + b"\x00\x05"
        assert raw(ledger, fmt.DB_ORDERS, b"o-2") == fmt.ORDER_HEAD.pack(50_000, T_2026_03_15, 2, 20_000, 400) + b"\x00\x01"
        assert raw(ledger, fmt.DB_CATEGORIES, b"garden") == b"\x00\x05"
        assert raw(ledger, fmt.DB_CATEGORY_NAMES, b"\x00\x05") == b"garden"
        assert stored_format(ledger) == 5
        assert ledger.balance("m-2", T_2026_04_01).balance == 165
        assert ledger.verify().ok
        continued = dump_ledger(ledger)
    # The old store, upgraded and continued, holds exactly what this release writes from
    # scratch (issue months and cohort counters included), but for the upgrade's own commit.
    fresh_path = tmp_path / "fresh"
    build_fixture_operations(fresh_path)
    with pointsledger.Ledger(fresh_path, engine=engine_name) as fresh:
        assert continue_the_old_store(fresh) == CONTINUED
        assert without_commit_count(dump_ledger(fresh)) == without_commit_count(continued)


def without_commit_count(dump):
    dump = dict(dump)
    dump[fmt.DB_META] = [item for item in dump[fmt.DB_META] if item[0] != fmt.META_COMMIT_COUNT]
    return dump


def test_a_store_of_the_two_byte_release_opens_read_only(tmp_path, engine_name):
    path = copy_fixture(tmp_path)
    with pointsledger.Ledger(path, engine=engine_name, readonly=True) as ledger:
        assert entries(ledger) == FIXTURE_JOURNAL
        assert ledger.category_count() == 5
        balance = ledger.balance("m-1", T_2026_04_01)
        assert (balance.balance, balance.clawed_back, balance.tier) == (923, 200, "silver")
        order = ledger.get_order("o-2")
        assert (order.member_id, order.amount_minor, order.category, order.refunded_minor, order.clawed_back) == (
            "m-1", 50_000, "electronics", 10_000, 200)
        assert (order.result.seq, order.result.points, order.result.balance) == (2, 1_000, 1_123)
        assert ledger.verify().ok


WIDE_NEW = 65_532  # 5 categories in the fixture + 65,532 = 65,537: codes 5 … 65,536


def fill_past_two_bytes(ledger):
    count = WIDE_NEW
    results = ledger.purchases(
        [f"w{index:05d}" for index in range(count)], ["m-4"] * count, [100] * count,
        [f"k{index:05d}" for index in range(count)], [T_2026_04_01] * count,
    )
    return results.applied


def test_more_than_65536_categories_in_an_old_store_on_both_engines(tmp_path):
    dumps = {}
    for engine_name in ("python", "cython"):
        path = copy_fixture(tmp_path, engine_name)
        with pointsledger.Ledger(path, engine=engine_name) as ledger:
            # Each purchase: 100 minor units → 1 point (×1.25 or ×1.5 still floors to 1).
            assert fill_past_two_bytes(ledger) == WIDE_NEW
            assert ledger.category_count() == 65_537
            assert ledger.balance("m-4", T_2026_04_01).balance == 65_532
            # w65530 (seq 10 + 65,530) got code 65,535, the last two-byte one; w65531 code
            # 65,536, four bytes.
            assert raw(ledger, fmt.DB_ORDERS, b"w65530") == fmt.ORDER_HEAD.pack(100, T_2026_04_01, 65_540, 0, 0) + b"\xff\xff"
            assert raw(ledger, fmt.DB_ORDERS, b"w65531") == fmt.ORDER_HEAD.pack(100, T_2026_04_01, 65_541, 0, 0) + b"\x00\x01\x00\x00"
            assert raw(ledger, fmt.DB_CATEGORIES, b"k65531") == b"\x00\x01\x00\x00"
            assert raw(ledger, fmt.DB_CATEGORY_NAMES, b"\x00\x01\x00\x00") == b"k65531"
            assert raw(ledger, fmt.DB_CATEGORIES, b"grocery") == b"\x00\x00"  # old codes unchanged
            # The store was upgraded to format 5 (§19) when opened; wide codes need 2, it stays 5.
            assert stored_format(ledger) == 5
        # Cold caches: codes are read back from the store, both widths.
        with pointsledger.Ledger(path, engine=engine_name) as ledger:
            again = ledger.purchases(["w65531", "w65530", "o-4"], ["m-4", "m-4", "m-2"], [100, 100, 7_000],
                                     ["k65531", "k65530", "grocery"], [T_2026_04_01, T_2026_04_01, T_2026_03_15])
            assert [(each.status, each.seq) for each in again] == [("DUPLICATE", 65_541), ("DUPLICATE", 65_540),
                                                                   ("DUPLICATE", 4)]
            conflict = ledger.purchases(["w65531"], ["m-4"], [100], ["k65530"], [T_2026_04_01])[0]
            assert conflict.status == "ALREADY_EXISTS"
            refund = ledger.refund("r-w", "w65531", 100, T_2026_04_01)
            assert (refund.status, refund.seq, refund.points, refund.balance) == ("APPLIED", 65_542, -1, 65_531)
            assert raw(ledger, fmt.DB_ORDERS, b"w65531") == fmt.ORDER_HEAD.pack(100, T_2026_04_01, 65_541, 100, 1) + b"\x00\x01\x00\x00"
            assert ledger.purchase("w-new", "m-4", 100, "k-new", T_2026_04_01).points == 1
            assert raw(ledger, fmt.DB_CATEGORIES, b"k-new") == b"\x00\x01\x00\x01"
            assert ledger.category_count() == 65_538
            assert (ledger.get_order("w65531").category, ledger.get_order("w65530").category) == ("k65531", "k65530")
            assert ledger.verify().ok
            dumps[engine_name] = dump_ledger(ledger)
    assert dumps["python"] == dumps["cython"]


def test_a_bounded_category_cache_gives_the_same_codes(tmp_path, engine_name, monkeypatch):
    # With room for two cached categories the caches empty again and again; codes
    # come from the store and every byte is what an unbounded cache writes.
    def run(path):
        with pointsledger.Ledger(path, engine=engine_name) as ledger:
            ledger.set_program(dict(pointsledger.EXAMPLE_PROGRAM, effective_from=T_2026_03_15))
            ledger.purchases(["a", "b", "c", "d"], ["m", "m", "n", "n"], [100, 200, 300, 400],
                             ["x", "y", "z", "x"], [T_2026_03_15] * 4)
            results = ledger.purchases(["e", "a", "f", "c", "g"], ["m", "m", "n", "n", "m"],
                                       [500, 100, 600, 300, 700], ["w", "x", "y", "z", "v"],
                                       [T_2026_04_01, T_2026_03_15, T_2026_04_01, T_2026_03_15, T_2026_04_01])
            assert [each.status for each in results] == ["APPLIED", "DUPLICATE", "APPLIED", "DUPLICATE", "APPLIED"]
            assert ledger.category_count() == 5
            assert raw(ledger, fmt.DB_CATEGORIES, b"v") == b"\x00\x04"
            return dump_ledger(ledger)

    unbounded = run(tmp_path / "unbounded")
    monkeypatch.setattr(pointsledger.limits, "category_cache_entries_max", 2)
    assert run(tmp_path / "bounded") == unbounded


@pytest.mark.parametrize("readonly", [False, True], ids=["write", "read-only"])
def test_a_store_of_a_newer_format_is_refused(tmp_path, engine_name, readonly):
    path = copy_fixture(tmp_path)
    env = lmdb.open(str(path), max_dbs=32)
    with env.begin(write=True) as txn:
        txn.put(fmt.META_FORMAT, fmt.U32.pack(6), db=env.open_db(fmt.DB_META, txn=txn))
    env.close()
    with pytest.raises(pointsledger.errors.StoreFormatUnknown) as refused:
        pointsledger.Ledger(path, engine=engine_name, readonly=readonly)
    assert refused.value.code == "FAILED_PRECONDITION"
    assert str(refused.value) == (
        f"{path}: store format 6 is not one this release reads (1 or 2 or 3 or 4 or 5); a newer release wrote it"
    )
    # Nothing was changed, and the environment was closed: it opens again (and is refused again).
    with pytest.raises(pointsledger.errors.StoreFormatUnknown):
        pointsledger.Ledger(path, engine=engine_name, readonly=readonly)


def test_a_store_of_the_release_before_engagement_continues_with_the_rules(tmp_path, engine_name):
    """The fixture (format 1, no engagement records) under a programme with the rules of §14:
    it is upgraded to format 5 (§19) when opened, and its members get their engagement state
    when a rule needs it."""
    path = copy_fixture(tmp_path)
    with pointsledger.Ledger(path, engine=engine_name) as ledger:
        assert stored_format(ledger) == 5
        document = dict(ledger.get_program(1).document, effective_from=T_2026_04_01, welcome_bonus=100,
                        milestones=[{"id": "three", "purchases": 3, "bonus_points": 40}])
        ledger.set_program(document)
        assert stored_format(ledger) == 5
        # m-1 bought twice in 2026 under the old release (its journal says so): the third reaches "three".
        # m-1 is silver (spend 12,345 + 50,000 − 10,000 refunded = 52,345): o-7 5,000 earns
        # floor(5,000 × 1.25 / 100) = 62; 923 + 62 + 40 = 1,025.
        third = ledger.purchase("o-7", "m-1", 5_000, "grocery", T_2026_04_01)
        assert (third.seq, third.points, third.balance) == (10, 62, 1025)
        assert third.bonuses == (pointsledger.Bonus("m-1", "milestone:three", 40),)
        new = ledger.purchase("o-8", "m-9", 1_000, "grocery", T_2026_04_01)
        assert (new.points, new.balance, new.bonuses) == (10, 110, (pointsledger.Bonus("m-9", "welcome", 100),))
        assert stored_format(ledger) == 5
        assert ledger.verify().ok
        assert ledger.balance("m-1", T_2026_04_01).milestones[0].progress == 3
        continued = dump_ledger(ledger)
    # The other engine reads it and continues.
    other = "python" if engine_name == "cython" else "cython"
    with pointsledger.Ledger(path, engine=other) as ledger:
        assert dump_ledger(ledger) == continued
        assert ledger.purchase("o-9", "m-1", 1_000, "grocery", T_2026_04_01).bonuses == ()
        assert ledger.verify().ok
    with pointsledger.Ledger(path, engine=engine_name, readonly=True) as ledger:
        assert ledger.balance("m-9", T_2026_04_01).bonus == 100
