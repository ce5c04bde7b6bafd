"""The points formula (SPEC §3): exact integers, one floor at the end, bonuses, cap.

points = floor(a × earn.points × c × r × p1 × … × pk / earn.per_minor_units) + b1 + … + bk
then min(points, cap) when a cap is set.
"""

from decimal import Decimal

import pytest

import pointsledger
from support import (
    T_2026_03_01, T_2026_03_15, T_2026_12_01, T_2026_12_15, T_2027_01_01, T_MIN,
    always_on_promotion, assert_invalid, entries, example_program, simple_program,
)


def set_example(ledger):
    assert ledger.set_program(example_program()) == 1


# --- the example programme ------------------------------------------------------


def test_electronics_at_member_tier(ledger):
    set_example(ledger)
    # floor(12345 × 1 × 2 (electronics) × 1 (member) / 100) = floor(246.9) = 246
    result = ledger.purchase("o-1", "alice", 12_345, "electronics", T_2026_03_15)
    assert (result.status, result.seq, result.points, result.balance) == ("APPLIED", 1, 246, 246)
    assert not result.duplicate
    assert entries(ledger) == [(1, "EARN", "alice", "o-1", 246, 246, T_2026_03_15, 1)]


def test_unknown_category_uses_default_multiplier(ledger):
    set_example(ledger)
    # floor(12345 × 1 × 1 (default) × 1 / 100) = floor(123.45) = 123
    assert ledger.purchase("o-1", "alice", 12_345, "books", T_2026_03_15).points == 123


def test_gift_cards_earn_zero_but_write_an_entry_and_count_spend(ledger):
    set_example(ledger)
    # floor(12345 × 0 / 100) = 0: still an EARN entry of 0, and 12,345 of spend.
    result = ledger.purchase("o-1", "alice", 12_345, "gift_cards", T_2026_03_15)
    assert (result.status, result.seq, result.points, result.balance) == ("APPLIED", 1, 0, 0)
    assert entries(ledger) == [(1, "EARN", "alice", "o-1", 0, 0, T_2026_03_15, 1)]
    balance = ledger.balance("alice", T_2026_03_15)
    assert balance.spend_minor == 12_345
    assert balance.balance == 0
    assert balance.earned == 0


def test_gift_card_spend_counts_towards_the_tier(ledger):
    set_example(ledger)
    # 50,000 of gift cards earns 0 but reaches silver (50,000): the next purchase
    # earns floor(10000 × 1 × 1.25 / 100) = 125.
    assert ledger.purchase("o-1", "alice", 50_000, "gift_cards", T_2026_03_15).points == 0
    assert ledger.purchase("o-2", "alice", 10_000, "books", T_2026_03_15).points == 125


def test_double_december_window(ledger):
    set_example(ledger)
    # Inside [2026-12-01, 2027-01-01): floor(12345 × 2 × 2 / 100) = floor(493.8) = 493
    assert ledger.purchase("o-start", "a", 12_345, "electronics", T_2026_12_01).points == 493
    assert ledger.purchase("o-mid", "b", 12_345, "electronics", T_2026_12_15).points == 493
    assert ledger.purchase("o-last", "c", 12_345, "electronics", T_2027_01_01 - 1).points == 493
    # Outside: 246 (the end is exclusive; the second before the start is outside).
    assert ledger.purchase("o-end", "d", 12_345, "electronics", T_2027_01_01).points == 246
    assert ledger.purchase("o-before", "e", 12_345, "electronics", T_2026_12_01 - 1).points == 246


# --- promotions -------------------------------------------------------------------


def test_two_active_promotions_multiply_and_bonuses_add(ledger):
    ledger.set_program(simple_program(promotions=[
        always_on_promotion("double", multiplier=2, bonus_points=10),
        always_on_promotion("half-again", multiplier=Decimal("1.5"), bonus_points=5),
    ]))
    # floor(10001 × 1 × 1 × 1 × 2 × 1.5 / 100) + 10 + 5 = floor(300.03) + 15 = 315
    assert ledger.purchase("o-1", "alice", 10_001, "books", T_2026_03_15).points == 315


def test_promotion_filters_category_tier_and_min_amount(ledger):
    ledger.set_program(simple_program(
        tiers=[
            {"name": "member", "min_spend_minor": 0, "multiplier": 1},
            {"name": "silver", "min_spend_minor": 10_000, "multiplier": 1},
        ],
        promotions=[
            always_on_promotion("shoes-only", categories=["shoes"], bonus_points=100),
            always_on_promotion("silver-only", tiers=["silver"], bonus_points=1_000),
            always_on_promotion("big-basket", min_amount_minor=5_000, bonus_points=10_000),
        ],
    ))
    # 4,999 books at member: floor(49.99) = 49, no promotion matches.
    assert ledger.purchase("o-1", "m", 4_999, "books", T_2026_03_15).points == 49
    # 5,000 books: 50 + 10,000 (min_amount_minor 5,000 is inclusive). Spend 9,999.
    assert ledger.purchase("o-2", "m", 5_000, "books", T_2026_03_15).points == 10_050
    # 100 shoes, still member (9,999 < 10,000): 1 + 100. This purchase reaches silver
    # (spend 10,099) but earns at the tier before it, so no silver bonus.
    assert ledger.purchase("o-3", "m", 100, "shoes", T_2026_03_15).points == 101
    # 100 books at silver: 1 + 1,000.
    assert ledger.purchase("o-4", "m", 100, "books", T_2026_03_15).points == 1_001
    assert ledger.balance("m", T_2026_03_15).tier == "silver"


def test_promotion_window_start_inclusive_end_exclusive(ledger):
    ledger.set_program(simple_program(promotions=[
        always_on_promotion("march-1-to-15", start="2026-03-01T00:00:00Z", end=T_2026_03_15, bonus_points=50),
    ]))
    # 100 cents = 1 point, + 50 inside the window.
    assert ledger.purchase("before", "m", 100, "x", T_2026_03_01 - 1).points == 1
    assert ledger.purchase("start", "m", 100, "x", T_2026_03_01).points == 51
    assert ledger.purchase("last", "m", 100, "x", T_2026_03_15 - 1).points == 51
    assert ledger.purchase("end", "m", 100, "x", T_2026_03_15).points == 1


def test_cap_applies_after_bonuses(ledger):
    ledger.set_program(simple_program(
        max_points_per_purchase=100,
        promotions=[always_on_promotion("plus-20", bonus_points=20)],
    ))
    # 9,000 cents: floor(90) + 20 = 110, capped to 100. (A cap before the bonus would give 110.)
    assert ledger.purchase("o-1", "m", 9_000, "x", T_2026_03_15).points == 100
    # 7,000 cents: 70 + 20 = 90, under the cap.
    assert ledger.purchase("o-2", "m", 7_000, "x", T_2026_03_15).points == 90
    # 1,000,000 cents: 10,000 + 20, capped to 100.
    assert ledger.purchase("o-3", "m", 1_000_000, "x", T_2026_03_15).points == 100


def test_zero_cap_means_no_cap(ledger):
    ledger.set_program(simple_program(max_points_per_purchase=0))
    # floor(10^12 / 100) = 10,000,000,000
    assert ledger.purchase("o-1", "m", 10**12, "x", T_2026_03_15).points == 10_000_000_000


# --- exactness -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("multiplier", "amount", "expected"),
    [
        # 12345 × 1.2345 / 100 = 152.399025 → 152
        ("1.2345", 12_345, 152),
        # 6000 × 1.15 / 100 = 69 exactly; float 6000*1.15/100 = 68.99999999999999 → 68
        ("1.15", 6_000, 69),
        # 10000 × 0.57 / 100 = 57 exactly; float gives 56.99999999999999 → 56
        ("0.57", 10_000, 57),
        # 10000 × 1.13 / 100 = 113 exactly; float gives 112.99999999999999 → 112
        ("1.13", 10_000, 113),
        # 1 × 0.0001 / 100 → 0
        ("0.0001", 1, 0),
        # 10^12 × 100 / 100 = 10^12
        ("100", 10**12, 10**12),
    ],
)
def test_category_multiplier_is_exact(ledger, multiplier, amount, expected):
    ledger.set_program(simple_program(category_multipliers={"c": Decimal(multiplier)}))
    assert ledger.purchase("o-1", "m", amount, "c", T_2026_03_15).points == expected


def test_stacked_four_place_multipliers_are_exact(ledger):
    # category 1.2345 × tier 1.25: 480000 × 1.2345 × 1.25 / 100 = 7407 exactly
    # (float 480000/100*1.2345*1.25 = 7406.999999999999 → 7406).
    ledger.set_program(simple_program(
        category_multipliers={"c": Decimal("1.2345")},
        tiers=[
            {"name": "member", "min_spend_minor": 0, "multiplier": 1},
            {"name": "silver", "min_spend_minor": 1, "multiplier": Decimal("1.25")},
        ],
    ))
    # The first purchase (1 cent, member, books) only lifts the member to silver: 0 points.
    assert ledger.purchase("o-0", "m", 1, "books", T_2026_03_15).points == 0
    assert ledger.purchase("o-1", "m", 480_000, "c", T_2026_03_15).points == 7_407


def test_multiplier_given_as_json_text_is_exact(ledger):
    # JSON numbers are read as decimals, never floats: 1.2345 × 12345 / 100 → 152.
    text = (
        '{"currency":"USD","earn":{"points":1,"per_minor_units":100},'
        '"category_multipliers":{"c":1.2345},'
        '"tiers":[{"name":"member","min_spend_minor":0,"multiplier":1}],'
        '"point_value":"0.01","effective_from":946684800}'
    )
    ledger.set_program(text)
    assert ledger.purchase("o-1", "m", 12_345, "c", T_2026_03_15).points == 152


def test_earn_ratio_floors_once_at_the_end(ledger):
    # 3 points per 7 cents: floor(10 × 3 / 7) = floor(4.28) = 4 (not 10 // 7 × 3 = 3).
    ledger.set_program(simple_program(earn={"points": 3, "per_minor_units": 7}))
    assert ledger.purchase("o-1", "m", 10, "x", T_2026_03_15).points == 4


# --- huge products -----------------------------------------------------------------


def huge_program(**overrides):
    return simple_program(earn={"points": 1_000_000, "per_minor_units": 1}, **overrides)


def test_product_over_int64_is_refused_naming_points(ledger):
    ledger.set_program(huge_program(promotions=[
        always_on_promotion("x100-a", multiplier=100),
        always_on_promotion("x100-b", multiplier=100),
        always_on_promotion("x100-c", multiplier=100),
    ]))
    # 10^12 × 10^6 × 100 × 100 × 100 / 1 = 10^24 > 2^63 − 1
    with pytest.raises(pointsledger.InvalidArgument) as error_info:
        ledger.purchase("o-1", "m", 10**12, "x", T_2026_03_15)
    assert_invalid(error_info, "points", 10**24)
    assert entries(ledger) == []
    with pytest.raises(pointsledger.NotFound):
        ledger.balance("m", T_2026_03_15)
    assert ledger.verify().ok


def test_category_times_amount_over_int64_is_refused_in_a_batch(ledger):
    ledger.set_program(huge_program(category_multipliers={"big": 100}))
    # item 0: 10^12 × 10^6 × 100 = 10^20 > int64 → refused;
    # item 1: 10^12 × 10^6 × 1 = 10^18 fits.
    results = ledger.purchases(["o-1", "o-2"], ["m", "m"], [10**12, 10**12], ["big", "x"],
                               [T_2026_03_15, T_2026_03_15])
    assert results[0].status == "INVALID_ARGUMENT"
    assert results[0].error.field == "points"
    assert repr(10**20) in str(results[0].error)
    assert (results[1].status, results[1].seq, results[1].points) == ("APPLIED", 1, 10**18)
    assert entries(ledger) == [(1, "EARN", "m", "o-2", 10**18, 10**18, T_2026_03_15, 1)]


def test_big_product_that_fits_is_exact(ledger):
    ledger.set_program(huge_program(category_multipliers={"c": Decimal("9.2233")}))
    # 999,999,999,999 × 10^6 × 9.2233 = 9,223,299,999,990,776,700 (< 2^63 − 1; not a float)
    result = ledger.purchase("o-1", "m", 999_999_999_999, "c", T_2026_03_15)
    assert result.points == 9_223_299_999_990_776_700
    assert result.balance == 9_223_299_999_990_776_700


def test_huge_intermediate_product_with_a_fitting_result_is_exact(ledger):
    ledger.set_program(simple_program(
        earn={"points": 999_999, "per_minor_units": 1_000_000},
        promotions=[
            always_on_promotion("x100-a", multiplier=100),
            always_on_promotion("x100-b", multiplier=100),
            always_on_promotion("x99", multiplier=Decimal("99.9999")),
        ],
    ))
    # floor(999,999,999,999 × 999,999 × 100 × 100 × 99.9999 / 10^6)
    #   = floor(999998000000000001999999 / 10^6) = 999,998,000,000,000,001
    # (the float product is 999998000000000100; the integer numerator is ~10^36)
    result = ledger.purchase("o-1", "m", 999_999_999_999, "x", T_2026_03_15)
    assert result.points == 999_998_000_000_000_001


def test_balance_over_int64_is_refused_naming_balance(ledger):
    ledger.set_program(huge_program(category_multipliers={"c": Decimal("9.2233")}))
    # 10^12 × 10^6 × 9.2233 = 9,223,300,000,000,000,000 fits; a second one on the
    # same member would make the balance 18,446,600,000,000,000,000 > int64.
    assert ledger.purchase("o-1", "m", 10**12, "c", T_2026_03_15).points == 9_223_300_000_000_000_000
    before = entries(ledger)
    with pytest.raises(pointsledger.InvalidArgument) as error_info:
        ledger.purchase("o-2", "m", 10**12, "c", T_2026_03_15)
    assert error_info.value.field == "balance"
    assert error_info.value.code == "INVALID_ARGUMENT"
    assert entries(ledger) == before
    assert ledger.verify().ok


def test_entry_records_the_version(ledger):
    ledger.set_program(simple_program(effective_from=T_MIN))
    ledger.set_program(simple_program(effective_from=T_2026_03_01,
                                      earn={"points": 2, "per_minor_units": 100}))
    # 10,000 cents: 100 points under v1, 200 under v2.
    ledger.purchase("o-1", "m", 10_000, "x", T_2026_03_15)
    assert entries(ledger) == [(1, "EARN", "m", "o-1", 200, 200, T_2026_03_15, 2)]


def test_cap_brings_a_huge_product_back_into_range(ledger):
    ledger.set_program(huge_program(max_points_per_purchase=1_000, promotions=[
        always_on_promotion("x100-a", multiplier=100),
        always_on_promotion("x100-b", multiplier=100, bonus_points=2**62),
        always_on_promotion("x100-c", multiplier=100, bonus_points=2**62),
    ]))
    # floor(10^12 × 10^6 × 100^3) + 2 × 2^62 = 10^24 + 2^63: far over int64, but the
    # points of the formula are min(that, cap) = 1,000.
    result = ledger.purchase("o-1", "m", 10**12, "x", T_2026_03_15)
    assert (result.status, result.points, result.balance) == ("APPLIED", 1_000, 1_000)
