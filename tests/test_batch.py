"""Bulk purchases (SPEC §6): columns in, one result per item, in order.

Programme: the §3 example. 10,000 cents of books at member tier earn 100;
12,345 of electronics earn 246.
"""

import calendar

import numpy
import pytest

import pointsledger
from support import (
    T_2026_01_15, T_2026_03_01, T_2026_03_15, dump_ledger, entries, example_program, simple_program,
)

T = T_2026_03_15  # 2026-03-15T00:00:00Z


@pytest.fixture
def example(ledger):
    ledger.set_program(example_program())
    return ledger


def statuses(results):
    return [item.status for item in results]


def test_columnar_lists(example):
    results = example.purchases(
        ["o-1", "o-2", "o-3"], ["a", "b", "a"], [10_000, 12_345, 12_345],
        ["books", "electronics", "gift_cards"], [T, T, T + 60],
    )
    assert len(results) == 3
    assert [(item.status, item.seq, item.points, item.balance) for item in results] == [
        ("APPLIED", 1, 100, 100),
        ("APPLIED", 2, 246, 246),
        ("APPLIED", 3, 0, 100),
    ]
    assert all(item.ok and item.error is None for item in results)
    assert (results.applied, results.duplicates, results.rejected, results.points) == (3, 0, 0, 346)
    assert entries(example) == [
        (1, "EARN", "a", "o-1", 100, 100, T, 1),
        (2, "EARN", "b", "o-2", 246, 246, T, 1),
        (3, "EARN", "a", "o-3", 0, 100, T + 60, 1),
    ]


def test_numpy_int64_columns(example):
    results = example.purchases(
        numpy.array(["o-1", "o-2"], dtype=object),
        numpy.array(["a", "b"], dtype=object),
        numpy.array([10_000, 12_345], dtype=numpy.int64),
        numpy.array(["books", "electronics"], dtype=object),
        numpy.array([T, T], dtype=numpy.int64),
    )
    assert [(item.status, item.points, item.balance) for item in results] == [
        ("APPLIED", 100, 100), ("APPLIED", 246, 246),
    ]
    assert entries(example) == [
        (1, "EARN", "a", "o-1", 100, 100, T, 1),
        (2, "EARN", "b", "o-2", 246, 246, T, 1),
    ]
    # The balance and entries are plain ints, equal to the list-input ones.
    assert type(example.balance("a", T).balance) is int


def test_numpy_float_amounts_are_refused_per_item(example):
    results = example.purchases(
        ["o-1", "o-2"], ["a", "a"], numpy.array([100.0, 200.0]), ["books", "books"],
        numpy.array([T, T], dtype=numpy.int64),
    )
    assert statuses(results) == ["INVALID_ARGUMENT", "INVALID_ARGUMENT"]
    assert results[0].error.field == "amount_minor"
    assert entries(example) == []


def test_a_rejected_item_does_not_stop_the_others(example):
    results = example.purchases(
        ["o-1", "o-2", "", "o-4", "o-5"],
        ["a", "a", "a", "a", "a\x00"],
        [10_000, 0, 10_000, 10_000, 10_000],
        ["books"] * 5,
        [T, T, T, T, T],
    )
    assert statuses(results) == ["APPLIED", "INVALID_ARGUMENT", "INVALID_ARGUMENT", "APPLIED",
                                 "INVALID_ARGUMENT"]
    assert [item.error.field for item in results if not item.ok] == [
        "amount_minor", "order_id", "member_id",
    ]
    assert all(item.error.code == "INVALID_ARGUMENT" for item in results if not item.ok)
    assert [(item.seq, item.balance) for item in results][0::3] == [(1, 100), (2, 200)]
    assert (results.applied, results.duplicates, results.rejected) == (2, 0, 3)
    assert [entry[3] for entry in entries(example)] == ["o-1", "o-4"]
    assert example.verify().ok


def test_second_occurrence_in_the_same_batch_is_duplicate_or_conflict(example):
    results = example.purchases(
        ["o-1", "o-2", "o-1", "o-1", "o-2"],
        ["a", "b", "a", "a", "b"],
        [10_000, 12_345, 10_000, 10_001, 12_345],
        ["books", "electronics", "books", "books", "electronics"],
        [T, T, T, T, T + 1],
    )
    assert statuses(results) == ["APPLIED", "APPLIED", "DUPLICATE", "ALREADY_EXISTS", "ALREADY_EXISTS"]
    # The duplicate carries the original's seq, points and balance.
    assert (results[2].seq, results[2].points, results[2].balance) == (1, 100, 100)
    assert results[2].ok
    assert isinstance(results[3].error, pointsledger.AlreadyExists)
    assert (results.applied, results.duplicates, results.rejected) == (2, 1, 2)
    assert len(entries(example)) == 2


def test_a_later_batch_sees_earlier_orders(example):
    example.purchases(["o-1"], ["a"], [10_000], ["books"], [T])
    results = example.purchases(["o-1", "o-1", "o-2"], ["a", "b", "a"], [10_000, 10_000, 10_000],
                                ["books", "books", "books"], [T, T, T])
    assert statuses(results) == ["DUPLICATE", "ALREADY_EXISTS", "APPLIED"]
    assert (results[2].seq, results[2].balance) == (2, 200)


def test_batch_items_apply_in_order_within_one_member(example):
    # Silver starts at 50,000: the item that crosses it earns at member, the next at silver.
    results = example.purchases(
        ["o-1", "o-2", "o-3"], ["a", "a", "a"], [49_999, 1, 10_000], ["books"] * 3, [T, T, T],
    )
    # 499, floor(0.01) = 0, floor(10000 × 1.25 / 100) = 125
    assert [item.points for item in results] == [499, 0, 125]
    assert [item.balance for item in results] == [499, 499, 624]


def test_purchase_before_any_programme_is_failed_precondition(ledger):
    before = dump_ledger(ledger)
    with pytest.raises(pointsledger.FailedPrecondition) as error_info:
        ledger.purchase("o-1", "a", 10_000, "books", T)
    assert error_info.value.code == "FAILED_PRECONDITION"
    results = ledger.purchases(["o-1", "o-2"], ["a", "b"], [10_000, 10_000], ["books"] * 2, [T, T])
    assert statuses(results) == ["FAILED_PRECONDITION", "FAILED_PRECONDITION"]
    assert dump_ledger(ledger) == before
    # Once a programme is set the same ids are judged afresh.
    ledger.set_program(example_program())
    assert ledger.purchase("o-1", "a", 10_000, "books", T).status == "APPLIED"


def test_invalid_field_is_reported_before_missing_programme(ledger):
    results = ledger.purchases(["o-1"], ["a"], [0], ["books"], [T])
    assert results[0].status == "INVALID_ARGUMENT"
    assert results[0].error.field == "amount_minor"


@pytest.mark.parametrize("short_column", ["member_ids", "amounts_minor", "categories", "times_s"])
def test_mismatched_column_lengths_are_refused(example, short_column):
    columns = {
        "order_ids": ["o-1", "o-2"], "member_ids": ["a", "b"], "amounts_minor": [100, 100],
        "categories": ["books", "books"], "times_s": [T, T],
    }
    columns[short_column] = columns[short_column][:1]
    before = dump_ledger(example)
    with pytest.raises(pointsledger.InvalidArgument) as error_info:
        example.purchases(**columns)
    assert error_info.value.code == "INVALID_ARGUMENT"
    assert error_info.value.field == short_column
    assert dump_ledger(example) == before


def test_empty_batch(example):
    results = example.purchases([], [], [], [], [])
    assert len(results) == 0
    assert (results.applied, results.duplicates, results.rejected) == (0, 0, 0)
    assert entries(example) == []


def test_large_batch_counts(example):
    count = 2_000
    results = example.purchases(
        [f"o-{index}" for index in range(count)],
        [f"m-{index % 7}" for index in range(count)],
        numpy.full(count, 10_000, dtype=numpy.int64),
        ["books"] * count,
        numpy.full(count, T, dtype=numpy.int64),
    )
    assert (results.applied, results.rejected) == (2_000, 0)
    # 2,000 = 5 × 286 + 2 × 285: members 0..4 get 286 purchases, members 5 and 6 get 285.
    # Each 10,000 purchase earns 100 at member (spend < 50,000: purchases 1-5),
    # 125 at silver (spend < 200,000: purchases 6-20), 150 at gold (21 on):
    # member 0: 5 × 100 + 15 × 125 + 266 × 150 = 500 + 1,875 + 39,900 = 42,275
    # member 6: 5 × 100 + 15 × 125 + 265 × 150 = 500 + 1,875 + 39,750 = 42,125
    assert example.balance("m-0", T).balance == 42_275
    assert example.balance("m-6", T).balance == 42_125
    assert example.balance("m-6", T).tier == "gold"
    assert example.last_seq() == 2_000
    assert example.verify().ok


@pytest.mark.parametrize(
    "columns",
    [
        pytest.param(lambda: (("o-1", "o-2"), ("a", "b"), (10_000, 12_345), ("books", "electronics"),
                              (T, T)), id="tuples"),
        pytest.param(lambda: (numpy.array(["o-1", "o-2"]), numpy.array(["a", "b"]),
                              numpy.array([10_000, 12_345], dtype=numpy.int32),
                              numpy.array(["books", "electronics"]),
                              numpy.array([T, T], dtype=numpy.uint64)), id="numpy-str-int32-uint64"),
        pytest.param(lambda: (["o-1", "o-2"], ["a", "b"], [numpy.int64(10_000), numpy.int16(12_345)],
                              ["books", "electronics"], [numpy.int64(T), T]), id="numpy-scalars"),
        pytest.param(lambda: (["o-1", "o-2"], ["a", "b"],
                              numpy.array([10_000, 0, 12_345, 0], dtype=numpy.int64)[::2],
                              ["books", "electronics"],
                              numpy.array([T, 0, T, 0], dtype=numpy.int64)[::2]), id="strided-arrays"),
        pytest.param(lambda: (["o-1", "o-2"], ["a", "b"], numpy.array([10_000, 12_345], dtype=object),
                              ["books", "electronics"], numpy.array([T, T], dtype=object)),
                     id="object-arrays"),
    ],
)
def test_column_shapes(example, columns):
    results = example.purchases(*columns())
    # 10,000 books: 100; 12,345 electronics: 246
    assert [(item.status, item.seq, item.points, item.balance) for item in results] == [
        ("APPLIED", 1, 100, 100), ("APPLIED", 2, 246, 246),
    ]
    assert entries(example) == [
        (1, "EARN", "a", "o-1", 100, 100, T, 1),
        (2, "EARN", "b", "o-2", 246, 246, T, 1),
    ]


def test_integers_beyond_int64_are_refused_per_item(example):
    results = example.purchases(
        ["o-1", "o-2", "o-3", "o-4", "o-5"], ["a"] * 5,
        [2**63, 2**64, -(2**63) - 1, 10**30, 100], ["books"] * 5,
        [T, T, T, T, 2**70],
    )
    assert statuses(results) == ["INVALID_ARGUMENT"] * 5
    assert [item.error.field for item in results] == ["amount_minor"] * 4 + ["time_s"]
    assert entries(example) == []


def test_numpy_bool_amounts_are_refused(example):
    results = example.purchases(["o-1"], ["a"], numpy.array([True]), ["books"], [T])
    assert results[0].status == "INVALID_ARGUMENT"
    assert results[0].error.field == "amount_minor"


def test_refused_first_occurrence_is_not_remembered_within_the_batch(example):
    results = example.purchases(["o-1", "o-1", "o-1"], ["a", "a", "a"], [0, 10_000, 10_000],
                                ["books"] * 3, [T, T, T])
    assert statuses(results) == ["INVALID_ARGUMENT", "APPLIED", "DUPLICATE"]
    assert (results[1].seq, results[2].seq) == (1, 1)


def test_batch_crediting_many_distinct_expiry_instants(ledger):
    # 100 purchases on the 15th of 100 consecutive months (2026-01 … 2034-04), one member
    # each, expiry 1 month: 100 distinct expiry instants in one batch.
    ledger.set_program(simple_program(expiry_months=1))
    months = [(2026 + index // 12, index % 12 + 1) for index in range(100)]
    times_s = [calendar.timegm((year, month, 15, 0, 0, 0)) for year, month in months]
    results = ledger.purchases([f"o-{index}" for index in range(100)],
                               [f"m-{index:03d}" for index in range(100)],
                               [10_000] * 100, ["x"] * 100, times_s)
    assert results.applied == 100
    assert ledger.verify().ok, ledger.verify().problems
    # m-000 bought 2026-01-15: its 100 points expire 2026-03-01.
    first = ledger.balance("m-000", T_2026_01_15)
    assert (first.next_expiry_s, first.next_expiry_points) == (T_2026_03_01, 100)
    # 2034-04-15 + 1 + 1 month → 2034-06-01T00:00:00Z = 2032732800
    last = ledger.balance("m-099", T_2026_01_15)
    assert (last.next_expiry_s, last.next_expiry_points) == (2_032_732_800, 100)
    # 2026-03-01 … 2034-06-01: all 100 members, 10,000 points.
    assert ledger.liability(T_2026_01_15).expiring_90_days == 200  # 2026-03-01 and 2026-04-01
    result = ledger.expire(2_032_732_800)
    assert (result.members, result.points) == (100, 10_000)
    assert ledger.verify().ok


def test_a_full_category_dictionary_refuses_the_purchase_and_writes_nothing(example, monkeypatch):
    # With room for two categories, a third new one is refused before anything is
    # applied: no EARN entry, no balance change, and a retry is not counted twice.
    monkeypatch.setattr(pointsledger.limits, "categories_max", 2)
    example.purchases(["o-1", "o-2"], ["a", "a"], [10_000, 10_000], ["books", "toys"], [T, T])
    before = dump_ledger(example)
    results = example.purchases(["o-3"], ["a"], [10_000], ["games"], [T + 1])
    # A capacity refusal: RESOURCE_EXHAUSTED (§10), never INVALID_ARGUMENT.
    assert results[0].status == "RESOURCE_EXHAUSTED"
    assert isinstance(results[0].error, pointsledger.ResourceExhausted)
    assert results[0].error.field == "category"
    assert str(results[0].error) == "category 'games': the ledger already holds 2 categories, its most; use one of them"
    with pytest.raises(pointsledger.ResourceExhausted):
        example.purchase("o-3", "a", 10_000, "games", T + 1)
    assert dump_ledger(example) == before
    assert example.balance("a", T + 2).balance == 200
    # A known category still works, and the refused order id is free to use.
    assert example.purchase("o-3", "a", 10_000, "books", T + 1).points == 100


def test_raw_results_read_as_a_list_of_tuples(example):
    """BatchResult.raw: a list (Python engine) or a PurchaseResults (Cython), read the same way."""
    results = example.purchases(
        ["o-1", "o-2", "o-1", ""],
        ["a", "b", "a", "a"],
        [10_000, 12_345, 10_000, 10_000],
        ["books", "electronics", "books", "books"],
        [T, T, T, T],
    )
    raw = results.raw
    error = raw[3][4]
    assert isinstance(error, pointsledger.InvalidArgument) and error.field == "order_id"
    expected = [
        ("APPLIED", 1, 100, 100, None),
        ("APPLIED", 2, 246, 246, None),
        ("DUPLICATE", 1, 100, 100, None),
        ("INVALID_ARGUMENT", 0, 0, 0, error),
    ]
    assert len(raw) == 4 and bool(raw)
    assert raw == expected and expected == raw and not raw != expected
    assert raw != expected[:3] and raw != expected[:3] + [("APPLIED", 0, 0, 0, None)]
    assert list(raw) == expected
    assert list(reversed(raw)) == expected[::-1]
    assert (raw[0], raw[-1], raw[-4]) == (expected[0], expected[3], expected[0])
    assert raw[1:3] == expected[1:3] and type(raw[1:3]) is list
    assert raw[::-2] == [expected[3], expected[1]]
    with pytest.raises(IndexError):
        raw[4]
    with pytest.raises(IndexError):
        raw[-5]
    # Counted as the twin counts: 100 + 246 applied points; the duplicate's are not new.
    assert (results.applied, results.duplicates, results.rejected, results.points) == (2, 1, 1, 346)
