"""Expiry (SPEC §5, §15): instants, EXPIRE entries before operations, expire runs.

Programme: 1 point per 100 cents, one tier ×1, expiry_months E as given.
A 10,000-cent purchase earns 100 points.
"""

import pytest

import pointsledger
from pointsledger.store import format as store_format
from support import (
    T_2026_01_15, T_2026_01_31, T_2026_03_01, T_2026_03_15, T_2026_04_01, T_2026_05_01, T_2026_06_01,
    T_2026_07_01, T_2026_12_15, T_2027_02_01, T_2027_04_01, T_MAX, dump_ledger, entries,
    simple_program,
)

T_2200_01_01 = 7_258_118_400  # 2200-01-01T00:00:00Z (beyond the event range, fits int64)
T_2100_02_01 = 4_105_123_200  # 2100-02-01T00:00:00Z
T_2026_02_15 = 1_771_113_600  # 2026-02-15T00:00:00Z


@pytest.mark.parametrize(
    ("expiry_months", "earned_at", "expected_instant"),
    [
        (12, T_2026_03_15, T_2027_04_01),  # the SPEC's example: March 2026 + 12 + 1 → April 2027
        (1, T_2026_01_31, T_2026_03_01),  # month end: January + 1 + 1 → March 1st
        (1, T_2026_12_15, T_2027_02_01),  # across the year end
        (1, T_2026_03_01, T_2026_05_01),  # March + 1 + 1 → May 1st
        (1200, T_MAX, T_2200_01_01),  # December 2099 + 1200 + 1 → January 2200
        (1, T_MAX, T_2100_02_01),  # December 2099 + 1 + 1 → February 2100
    ],
)
def test_expiry_instant(ledger, expiry_months, earned_at, expected_instant):
    ledger.set_program(simple_program(expiry_months=expiry_months))
    ledger.purchase("o-1", "m", 10_000, "x", earned_at)
    balance = ledger.balance("m", earned_at)
    assert (balance.next_expiry_s, balance.next_expiry_points) == (expected_instant, 100)


def test_points_expire_at_their_instant_not_before(ledger):
    ledger.set_program(simple_program(expiry_months=1))
    ledger.purchase("o-1", "m", 10_000, "x", T_2026_01_31)  # 100 points, instant 2026-03-01
    # One second before the instant: still there; the second purchase goes to April 1st.
    ledger.purchase("o-2", "m", 10_000, "x", T_2026_03_01 - 1)
    assert [entry[1] for entry in entries(ledger)] == ["EARN", "EARN"]
    # At the instant (≤ t): one EXPIRE entry with the operation's time and id, before its EARN.
    ledger.purchase("o-3", "m", 10_000, "x", T_2026_03_01)
    assert entries(ledger) == [
        (1, "EARN", "m", "o-1", 100, 100, T_2026_01_31, 1),
        (2, "EARN", "m", "o-2", 100, 200, T_2026_03_01 - 1, 1),
        (3, "EXPIRE", "m", "o-3", -100, 100, T_2026_03_01, 1),
        (4, "EARN", "m", "o-3", 100, 200, T_2026_03_01, 1),
    ]
    balance = ledger.balance("m", T_2026_03_01)
    assert (balance.balance, balance.expired, balance.earned) == (200, 100, 300)
    assert ledger.verify().ok


@pytest.mark.parametrize("operation", ["redeem", "adjust", "refund"])
def test_expire_entry_before_each_kind_of_operation(ledger, operation):
    ledger.set_program(simple_program(expiry_months=1))
    ledger.purchase("o-1", "m", 10_000, "x", T_2026_01_31)  # 100, instant 2026-03-01
    ledger.purchase("o-2", "m", 10_000, "x", T_2026_02_15)  # 100, instant 2026-04-01
    if operation == "redeem":
        ledger.redeem("op-1", "m", 30, T_2026_03_01)
        last = (4, "REDEEM", "m", "op-1", -30, 70, T_2026_03_01, 1)
    elif operation == "adjust":
        ledger.adjust("op-1", "m", 30, "goodwill", T_2026_03_01)
        last = (4, "ADJUST", "m", "op-1", 30, 130, T_2026_03_01, 1)
    else:
        # Refund all of o-2: floor(100 × 10000 / 10000) − 0 = 100.
        ledger.refund("op-1", "o-2", 10_000, T_2026_03_01)
        last = (4, "CLAWBACK", "m", "op-1", -100, 0, T_2026_03_01, 1)
    assert entries(ledger, from_seq=3) == [
        (3, "EXPIRE", "m", "op-1", -100, 100, T_2026_03_01, 1),
        last,
    ]
    assert ledger.verify().ok


def test_refused_operation_writes_no_expire_entry(ledger):
    ledger.set_program(simple_program(expiry_months=1))
    ledger.purchase("o-1", "m", 10_000, "x", T_2026_01_31)  # instant 2026-03-01
    ledger.purchase("o-2", "m", 10_000, "x", T_2026_02_15)  # instant 2026-04-01
    before = dump_ledger(ledger)
    # At 2026-03-01, 100 are usable (the other 100 are due): 150 is refused, and the
    # due points are not expired by the refused call.
    with pytest.raises(pointsledger.FailedPrecondition):
        ledger.redeem("rd-1", "m", 150, T_2026_03_01)
    with pytest.raises(pointsledger.FailedPrecondition):
        ledger.adjust("adj-1", "m", -150, "correction", T_2026_03_01)
    assert dump_ledger(ledger) == before
    assert len(entries(ledger)) == 2


def test_expire_run_in_member_id_byte_order_and_idempotent(ledger):
    ledger.set_program(simple_program(expiry_months=1))
    # Byte order of the UTF-8 ids: "Z" (0x5A) < "a" < "b" < "é" (0xC3 0xA9).
    for order_id, member_id, amount in [("o-1", "b", 20_000), ("o-2", "é", 40_000),
                                        ("o-3", "a", 10_000), ("o-4", "Z", 30_000)]:
        ledger.purchase(order_id, member_id, amount, "x", T_2026_01_31)  # instant 2026-03-01
    ledger.purchase("o-5", "later", 10_000, "x", T_2026_02_15)  # instant 2026-04-01: not due
    result = ledger.expire(T_2026_03_01)
    assert (result.as_of_s, result.members, result.points) == (T_2026_03_01, 4, 1_000)
    ref = "expire-run@1772323200"
    assert entries(ledger, from_seq=6) == [
        (6, "EXPIRE", "Z", ref, -300, 0, T_2026_03_01, 1),
        (7, "EXPIRE", "a", ref, -100, 0, T_2026_03_01, 1),
        (8, "EXPIRE", "b", ref, -200, 0, T_2026_03_01, 1),
        (9, "EXPIRE", "é", ref, -400, 0, T_2026_03_01, 1),
    ]
    before = entries(ledger)
    again = ledger.expire(T_2026_03_01)
    assert (again.members, again.points) == (0, 0)
    assert entries(ledger) == before
    # A later run picks up only what became due since.
    third = ledger.expire(T_2026_04_01)
    assert (third.members, third.points) == (1, 100)
    assert entries(ledger, from_seq=10) == [
        (10, "EXPIRE", "later", "expire-run@1775001600", -100, 0, T_2026_04_01, 1),
    ]
    assert ledger.verify().ok


def test_expire_run_before_anything_is_due_writes_nothing(ledger):
    ledger.set_program(simple_program(expiry_months=1))
    ledger.purchase("o-1", "m", 10_000, "x", T_2026_01_31)
    result = ledger.expire(T_2026_03_01 - 1)
    assert (result.members, result.points) == (0, 0)
    assert len(entries(ledger)) == 1


def test_expire_run_then_operation_does_not_expire_twice(ledger):
    ledger.set_program(simple_program(expiry_months=1))
    ledger.purchase("o-1", "m", 10_000, "x", T_2026_01_31)
    ledger.expire(T_2026_03_01)
    ledger.purchase("o-2", "m", 10_000, "x", T_2026_03_15)
    assert [entry[1:5] for entry in entries(ledger)] == [
        ("EARN", "m", "o-1", 100),
        ("EXPIRE", "m", "expire-run@1772323200", -100),
        ("EARN", "m", "o-2", 100),
    ]


def test_zero_expiry_months_never_expires(ledger):
    ledger.set_program(simple_program(expiry_months=0))
    ledger.purchase("o-1", "m", 10_000, "x", T_2026_01_31)
    result = ledger.expire(T_MAX)
    assert (result.members, result.points) == (0, 0)
    balance = ledger.balance("m", T_MAX)
    assert (balance.balance, balance.available) == (100, 100)
    assert (balance.next_expiry_s, balance.next_expiry_points) == (None, 0)
    ledger.purchase("o-2", "m", 10_000, "x", T_MAX)
    assert [entry[1] for entry in entries(ledger)] == ["EARN", "EARN"]


def member_bucket_count(ledger, member_id):
    with ledger.store.env.begin() as txn:
        value = txn.get(member_id.encode(), db=ledger.store.dbs[store_format.DB_MEMBERS])
    return store_format.MEMBER_HEAD.unpack_from(value)[-1]


def test_buckets_with_the_same_instant_merge(ledger):
    ledger.set_program(simple_program(expiry_months=12))
    # Both expire 2027-04-01: one bucket of 100 + 200.
    ledger.purchase("o-1", "m", 10_000, "x", T_2026_03_01)
    ledger.purchase("o-2", "m", 20_000, "x", T_2026_03_15)
    ledger.adjust("adj-1", "m", 5, "goodwill", T_2026_03_15)
    balance = ledger.balance("m", T_2026_03_15)
    assert (balance.next_expiry_s, balance.next_expiry_points) == (T_2027_04_01, 305)
    assert member_bucket_count(ledger, "m") == 1
    assert ledger.verify().ok


def test_next_expiring_bucket_and_available_versus_balance(ledger):
    ledger.set_program(simple_program(expiry_months=12))
    ledger.purchase("o-1", "m", 10_000, "x", T_2026_01_15)  # 100, instant 2027-02-01
    ledger.purchase("o-2", "m", 20_000, "x", T_2026_03_15)  # 200, instant 2027-04-01
    early = ledger.balance("m", T_2026_06_01)
    assert (early.balance, early.available) == (300, 300)
    assert (early.next_expiry_s, early.next_expiry_points) == (T_2027_02_01, 100)
    # At 2027-02-01 the first bucket is overdue but not expired: balance keeps it,
    # available does not, and it is not the "next" bucket.
    overdue = ledger.balance("m", T_2027_02_01)
    assert (overdue.balance, overdue.available) == (300, 200)
    assert (overdue.next_expiry_s, overdue.next_expiry_points) == (T_2027_04_01, 200)
    assert overdue.expired == 0
    past_all = ledger.balance("m", T_2027_04_01)
    assert (past_all.balance, past_all.available) == (300, 0)
    assert (past_all.next_expiry_s, past_all.next_expiry_points) == (None, 0)
    ledger.expire(T_2027_02_01)
    after = ledger.balance("m", T_2027_02_01)
    assert (after.balance, after.available, after.expired) == (200, 200, 100)


def test_credit_uses_the_expiry_of_the_version_at_its_own_time(ledger):
    ledger.set_program(simple_program(expiry_months=12))
    ledger.set_program(simple_program(expiry_months=0, effective_from=T_2026_06_01))
    ledger.purchase("o-new", "m", 10_000, "x", T_2026_07_01)  # v2: never expires
    ledger.purchase("o-old", "m", 10_000, "x", T_2026_03_15)  # backfill, v1: 2027-04-01
    balance = ledger.balance("m", T_2026_07_01)
    assert (balance.next_expiry_s, balance.next_expiry_points) == (T_2027_04_01, 100)
    assert balance.available == 200
    result = ledger.expire(T_MAX)
    assert (result.members, result.points) == (1, 100)
    assert ledger.balance("m", T_MAX).balance == 100


def test_debits_may_use_points_expiring_later_and_take_soonest_first(ledger):
    ledger.set_program(simple_program(expiry_months=1))
    ledger.purchase("o-1", "m", 10_000, "x", T_2026_01_15)  # 100, instant 2026-03-01
    ledger.purchase("o-2", "m", 10_000, "x", T_2026_02_15)  # 100, instant 2026-04-01
    ledger.redeem("rd-1", "m", 150, T_2026_02_15)
    balance = ledger.balance("m", T_2026_02_15)
    # 100 from the March bucket, 50 from the April bucket.
    assert (balance.next_expiry_s, balance.next_expiry_points) == (T_2026_04_01, 50)
    # Nothing left in the March bucket, so nothing expires on March 1st.
    assert ledger.expire(T_2026_03_01).points == 0
    assert ledger.expire(T_2026_04_01).points == 50


def test_several_due_buckets_expire_in_one_entry(ledger):
    ledger.set_program(simple_program(expiry_months=1))
    ledger.purchase("o-1", "m", 10_000, "x", T_2026_01_15)  # 100, instant 2026-03-01
    ledger.purchase("o-2", "m", 20_000, "x", T_2026_02_15)  # 200, instant 2026-04-01
    ledger.purchase("o-3", "m", 30_000, "x", T_2026_06_01)  # 300 at 2026-06-01: 300 expire first
    assert entries(ledger, from_seq=3) == [
        (3, "EXPIRE", "m", "o-3", -300, 0, T_2026_06_01, 1),
        (4, "EARN", "m", "o-3", 300, 300, T_2026_06_01, 1),
    ]


def test_expire_entries_record_the_version_in_force_at_their_time(ledger):
    ledger.set_program(simple_program(expiry_months=1))
    ledger.set_program(simple_program(expiry_months=1, effective_from=T_2026_03_01))
    ledger.purchase("o-1", "a", 10_000, "x", T_2026_01_15)  # v1, instant 2026-03-01
    ledger.purchase("o-2", "b", 10_000, "x", T_2026_01_15)  # v1, instant 2026-03-01
    ledger.purchase("o-3", "a", 10_000, "x", T_2026_03_15)  # v2: EXPIRE and EARN under v2
    ledger.expire(T_2026_03_15)  # the run at 2026-03-15: v2
    assert entries(ledger) == [
        (1, "EARN", "a", "o-1", 100, 100, T_2026_01_15, 1),
        (2, "EARN", "b", "o-2", 100, 100, T_2026_01_15, 1),
        (3, "EXPIRE", "a", "o-3", -100, 0, T_2026_03_15, 2),
        (4, "EARN", "a", "o-3", 100, 100, T_2026_03_15, 2),
        (5, "EXPIRE", "b", "expire-run@1773532800", -100, 0, T_2026_03_15, 2),
    ]


def test_balance_is_not_filtered_by_as_of(ledger):
    ledger.set_program(simple_program(expiry_months=12))
    ledger.purchase("o-1", "m", 10_000, "x", T_2026_06_01)  # 100, instant 2027-07-01
    # As of an earlier instant the entry still counts, and its bucket is unexpired.
    balance = ledger.balance("m", T_2026_01_15)
    assert (balance.balance, balance.available, balance.next_expiry_points) == (100, 100, 100)
