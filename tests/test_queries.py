"""Queries (SPEC §8, §15): history, journal, liability, rollforward."""

from decimal import Decimal
from fractions import Fraction

import pytest

import pointsledger
from support import (
    DAY_S, T_2026_01_15, T_2026_03_01, T_2026_03_10, T_2026_03_12, T_2026_03_15, T_2026_03_25,
    T_2026_04_01, T_2026_05_01, T_2026_06_01, T_2027_01_15, T_2027_03_02, T_MIN, dump_ledger,
    example_program, simple_program,
)

T = T_2026_03_15  # 2026-03-15T00:00:00Z


# --- history and journal -------------------------------------------------------------


@pytest.fixture
def interleaved(ledger):
    """m1 owns seq 1, 3, 5, 7, 9; m2 owns 2, 4, 6, 8 (100 points each)."""
    ledger.set_program(simple_program())
    for index in range(1, 10):
        member = "m1" if index % 2 else "m2"
        ledger.purchase(f"o-{index}", member, 10_000, "x", T + index)
    return ledger


def seqs(page):
    return [entry.seq for entry in page.entries]


def test_history_pages_newest_first(interleaved):
    first = interleaved.history("m1", limit=2)
    assert (seqs(first), first.next_before_seq) == ([9, 7], 7)
    second = interleaved.history("m1", limit=2, before_seq=first.next_before_seq)
    assert (seqs(second), second.next_before_seq) == ([5, 3], 3)
    third = interleaved.history("m1", limit=2, before_seq=second.next_before_seq)
    assert (seqs(third), third.next_before_seq) == ([1], None)
    entry = third.entries[0]
    assert (entry.kind, entry.member_id, entry.ref_id, entry.points, entry.balance, entry.time_s,
            entry.program_version) == ("EARN", "m1", "o-1", 100, 100, T + 1, 1)


def test_history_cursor_only_when_more_exist(interleaved):
    whole = interleaved.history("m1", limit=5)
    assert (seqs(whole), whole.next_before_seq) == ([9, 7, 5, 3, 1], None)
    more = interleaved.history("m1", limit=4)
    assert (seqs(more), more.next_before_seq) == ([9, 7, 5, 3], 3)
    last = interleaved.history("m1", limit=4, before_seq=3)
    assert (seqs(last), last.next_before_seq) == ([1], None)


def test_history_before_seq_is_exclusive_and_may_be_any_seq(interleaved):
    # 6 belongs to m2: m1's entries before it are 5, 3, 1.
    page = interleaved.history("m1", limit=10, before_seq=6)
    assert (seqs(page), page.next_before_seq) == ([5, 3, 1], None)
    assert seqs(interleaved.history("m1", limit=10, before_seq=9)) == [7, 5, 3, 1]
    assert seqs(interleaved.history("m1", limit=10, before_seq=100)) == [9, 7, 5, 3, 1]
    empty = interleaved.history("m1", limit=10, before_seq=1)
    assert (seqs(empty), empty.next_before_seq) == ([], None)
    assert seqs(interleaved.history("m2", limit=10)) == [8, 6, 4, 2]


def test_history_of_an_unknown_member_is_not_found(interleaved):
    with pytest.raises(pointsledger.NotFound) as error_info:
        interleaved.history("ghost")
    assert error_info.value.code == "NOT_FOUND"
    with pytest.raises(pointsledger.NotFound):
        interleaved.balance("ghost", T)


def test_journal_from_seq_is_inclusive(interleaved):
    page = interleaved.journal(from_seq=3, limit=2)
    assert [(entry.seq, entry.member_id, entry.ref_id) for entry in page] == [(3, "m1", "o-3"),
                                                                             (4, "m2", "o-4")]
    assert [entry.seq for entry in interleaved.journal(from_seq=8)] == [8, 9]
    assert interleaved.journal(from_seq=10) == []
    assert [entry.seq for entry in interleaved.journal()] == list(range(1, 10))
    assert interleaved.last_seq() == 9


# --- liability --------------------------------------------------------------------------


@pytest.fixture
def liable(ledger):
    """Example programme (expiry 12 months, point value 0.01).

    m1: +1,000 (100,000 books, 2026-03-15, bucket 2027-04-01); redeem 100; adjust −20;
        refund 10,000 → claw back floor(1000 × 10000 / 100000) = 100. Balance 780.
        2026 spend 100,000 − 10,000 = 90,000: silver, carried into 2027.
    m2: +200 (20,000 books, 2026-01-15, bucket 2027-02-01); adjust +50 (2026-06-01,
        bucket 2027-07-01). Balance 250. 2026 spend 20,000: member.
    Totals: earned 1,200, +50, −20, clawed back 100, redeemed 100, expired 0;
    outstanding 1,200 + 50 − 20 − 100 − 100 = 1,030 = 780 + 250.
    """
    ledger.set_program(example_program())
    ledger.purchase("o-1", "m1", 100_000, "books", T_2026_03_15)
    ledger.purchase("o-2", "m2", 20_000, "books", T_2026_01_15)
    ledger.redeem("rd-1", "m1", 100, T_2026_06_01)
    ledger.adjust("adj-1", "m2", 50, "goodwill", T_2026_06_01)
    ledger.adjust("adj-2", "m1", -20, "correction", T_2026_06_01)
    ledger.refund("r-1", "o-1", 10_000, T_2026_06_01)
    return ledger


def test_liability_totals_and_value(liable):
    report = liable.liability(T_2027_01_15)
    assert (report.earned, report.adjusted_positive, report.adjusted_negative, report.clawed_back,
            report.redeemed, report.expired) == (1_200, 50, 20, 100, 100, 0)
    assert report.issued == 1_250
    assert report.outstanding == 1_030
    assert report.currency == "USD"
    assert report.point_value == Decimal("0.01")
    assert report.outstanding_value == Decimal("10.30")
    assert isinstance(report.outstanding_value, Decimal)
    assert report.outstanding_by_tier == {"member": 250, "silver": 780, "gold": 0}


def test_liability_horizons_are_cumulative(liable):
    # as of 2027-01-15: 2027-02-01 (200) is 17 days ahead; 2027-04-01 (780) 76 days;
    # 2027-07-01 (50) 167 days.
    report = liable.liability(T_2027_01_15)
    assert (report.expiring_30_days, report.expiring_60_days, report.expiring_90_days,
            report.overdue) == (200, 200, 980, 0)


def test_liability_overdue_and_horizon_edges(liable):
    # as of 2027-03-02 = 2027-04-01 − 30 days: the February bucket (200) is overdue,
    # April's 780 is exactly at +30 days (inclusive).
    report = liable.liability(T_2027_03_02)
    assert (report.expiring_30_days, report.expiring_60_days, report.expiring_90_days,
            report.overdue) == (780, 780, 780, 200)
    # One second earlier, April is 30 days + 1 s away: not in the 30-day figure.
    earlier = liable.liability(T_2027_03_02 - 1)
    assert (earlier.expiring_30_days, earlier.expiring_60_days, earlier.overdue) == (0, 780, 200)
    # Overdue points are still outstanding until an expiry run.
    assert report.outstanding == 1_030
    liable.expire(T_2027_03_02)
    after = liable.liability(T_2027_03_02)
    assert (after.expired, after.outstanding, after.overdue) == (200, 830, 0)
    assert after.outstanding_value == Decimal("8.30")


def test_liability_is_read_only(liable):
    before = dump_ledger(liable)
    liable.liability(T_2027_03_02)
    assert dump_ledger(liable) == before


def test_liability_of_an_empty_ledger(ledger):
    ledger.set_program(example_program())
    report = ledger.liability(T)
    assert (report.outstanding, report.expiring_90_days, report.overdue) == (0, 0, 0)
    assert report.outstanding_value == Decimal("0")
    assert report.outstanding_by_tier == {"member": 0, "silver": 0, "gold": 0}


# --- rollforward -----------------------------------------------------------------------


@pytest.fixture
def rolled(ledger):
    """1 point per 100, expiry 1 month.

    2026-01-15 m1 +300 (bucket 2026-03-01)
    2026-03-10 m1: EXPIRE −300 (due), then +200 (bucket 2026-05-01)
    2026-03-12 m1 adjust +200, adjust −30
    2026-03-25 m1 redeem 50
    2026-04-01 m2 +100
    """
    ledger.set_program(simple_program(expiry_months=1))
    ledger.purchase("o-1", "m1", 30_000, "x", T_2026_01_15)
    ledger.purchase("o-2", "m1", 20_000, "x", T_2026_03_10)
    ledger.adjust("adj-1", "m1", 200, "goodwill", T_2026_03_12)
    ledger.adjust("adj-2", "m1", -30, "correction", T_2026_03_12)
    ledger.redeem("rd-1", "m1", 50, T_2026_03_25)
    ledger.purchase("o-3", "m2", 10_000, "x", T_2026_04_01)
    return ledger


def lines(report):
    return (report.opening, report.earned, report.adjusted, report.clawed_back, report.redeemed,
            report.expired, report.closing)


def test_rollforward_of_march(rolled):
    report = rolled.rollforward(T_2026_03_01, T_2026_04_01)
    # opening 300; + 200 earned + 170 adjusted − 0 − 50 redeemed − 300 expired = 320
    assert lines(report) == (300, 200, 170, 0, 50, 300, 320)
    # breakage: 300 expired ÷ (200 earned + 200 positive adjustments) = 3/4
    assert report.breakage_rate == Fraction(3, 4)
    assert isinstance(report.breakage_rate, Fraction)
    assert rolled.balance("m1", T_2026_04_01).balance == 320


def test_rollforward_periods_chain(rolled):
    january = rolled.rollforward(T_MIN, T_2026_03_01)
    assert lines(january) == (0, 300, 0, 0, 0, 0, 300)
    assert january.breakage_rate == Fraction(0)
    spring = rolled.rollforward(T_2026_03_01, T_2026_05_01)
    # April adds m2's 100: 300 + 300 + 170 − 50 − 300 = 420
    assert lines(spring) == (300, 300, 170, 0, 50, 300, 420)
    assert spring.breakage_rate == Fraction(3, 5)  # 300 ÷ (300 earned + 200 positive)
    assert spring.closing == rolled.liability(T_2026_05_01).outstanding


def test_rollforward_without_credits_has_no_breakage_rate(rolled):
    report = rolled.rollforward(T_2026_03_25, T_2026_03_25 + DAY_S)
    # opening 300 − 300 + 200 + 200 − 30 = 370; − 50 redeemed = 320
    assert lines(report) == (370, 0, 0, 0, 50, 0, 320)
    assert report.breakage_rate is None


def test_rollforward_with_clawbacks(ledger):
    ledger.set_program(example_program())
    ledger.purchase("o-1", "m", 12_345, "electronics", T_2026_03_15)  # 246
    ledger.refund("r-1", "o-1", 5_000, T_2026_04_01)  # floor(246 × 5000 / 12345) = 99
    report = ledger.rollforward(T_2026_04_01, T_2026_05_01)
    assert lines(report) == (246, 0, 0, 99, 0, 0, 147)
    assert report.breakage_rate is None
    march = ledger.rollforward(T_2026_03_01, T_2026_04_01)
    assert lines(march) == (0, 246, 0, 0, 0, 0, 246)


def test_never_expiring_points_are_in_no_horizon(ledger):
    ledger.set_program(simple_program(expiry_months=0))
    ledger.purchase("o-1", "m", 10_000, "x", T)  # 100, never expires
    report = ledger.liability(T)
    assert (report.outstanding, report.expiring_30_days, report.expiring_60_days,
            report.expiring_90_days, report.overdue) == (100, 0, 0, 0, 0)
    assert report.outstanding_by_tier == {"member": 100}


def test_outstanding_by_tier_counts_debt_negative(ledger):
    ledger.set_program(example_program())
    ledger.purchase("o-1", "m1", 12_345, "electronics", T)  # 246
    ledger.redeem("rd-1", "m1", 246, T)
    ledger.refund("r-1", "o-1", 12_345, T)  # debt 246
    ledger.purchase("o-2", "m2", 10_000, "books", T)  # 100
    report = ledger.liability(T)
    assert report.outstanding == -146
    assert report.outstanding_by_tier == {"member": -146, "silver": 0, "gold": 0}
    assert report.outstanding_value == Decimal("-1.46")


def test_has_order_answers_from_the_orders_without_a_scan(ledger):
    ledger.set_program(simple_program())
    ledger.purchase("o-1", "m", 10_000, "c", T_2026_03_15)
    assert ledger.has_order("o-1") is True
    assert ledger.has_order("o-2") is False


def test_release_mapped_pages_loses_nothing(ledger):
    # It only unmaps pages from this process: the next read faults them back in.
    ledger.set_program(simple_program())
    ledger.purchase("o-1", "m", 10_000, "c", T_2026_03_15)
    ledger.release_mapped_pages()
    assert ledger.balance("m", T_2026_03_15).balance == 100
    assert ledger.verify().ok


@pytest.mark.parametrize("from_s,to_s,field,value,inside", [
    (T_2026_03_01 + 43_200, T_2026_04_01, "from_s", T_2026_03_01 + 43_200, "2026-03-01T12:00:00Z is inside 2026-03-01"),
    (T_2026_03_01, T_2026_04_01 - 1, "to_s", T_2026_04_01 - 1, "2026-03-31T23:59:59Z is inside 2026-03-31"),
], ids=["from-noon", "to-a-second-before-midnight"])
def test_rollforward_boundaries_must_be_utc_midnights(rolled, from_s, to_s, field, value, inside):
    """SPEC §17: the rollforward sums whole days; a time inside a day is refused, not moved to its midnight."""
    with pytest.raises(pointsledger.InvalidArgument) as refused:
        rolled.rollforward(from_s, to_s)
    assert (refused.value.field, refused.value.value) == (field, value)
    assert str(refused.value) == (f"{field}: must be a UTC midnight: the rollforward sums whole UTC days, "
                                  f"and {inside} (got {value})")
