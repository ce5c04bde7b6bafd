"""Calendar-year tiers (SPEC §4, §15).

The tier programme used here: 1 point per 100 cents, no expiry (so no EXPIRE
entries get in the way), tiers member ×1 from 0, silver ×1.25 from 50,000,
gold ×1.5 from 200,000. A 10,000-cent purchase earns 100 / 125 / 150.
"""

from decimal import Decimal

import pytest

import pointsledger
from support import (
    T_2025_06_01, T_2026_03_15, T_2026_06_01, T_2027_01_15, T_2027_03_01, T_2027_03_15,
    T_2028_06_01, T_MIN, dump_ledger, entries, simple_program,
)

TIERS = [
    {"name": "member", "min_spend_minor": 0, "multiplier": 1},
    {"name": "silver", "min_spend_minor": 50_000, "multiplier": Decimal("1.25")},
    {"name": "gold", "min_spend_minor": 200_000, "multiplier": Decimal("1.5")},
]


@pytest.fixture
def tiered(ledger):
    assert ledger.set_program(simple_program(tiers=TIERS)) == 1
    return ledger


def test_new_member_starts_at_the_lowest_tier(tiered):
    # 10,000 at member: 100
    assert tiered.purchase("o-1", "m", 10_000, "x", T_2026_03_15).points == 100
    balance = tiered.balance("m", T_2026_03_15)
    assert (balance.tier, balance.tier_year, balance.spend_minor) == ("member", 2026, 10_000)


def test_crossing_a_threshold_changes_the_tier_for_the_next_purchase(tiered):
    # 50,000 at member: 500; spend reaches 50,000 = silver, but only after this purchase.
    assert tiered.purchase("o-1", "m", 50_000, "x", T_2026_03_15).points == 500
    assert tiered.balance("m", T_2026_03_15).tier == "silver"
    # 10,000 at silver: floor(10000 × 1.25 / 100) = 125
    assert tiered.purchase("o-2", "m", 10_000, "x", T_2026_03_15).points == 125
    # Spend 60,000 + 140,000 = 200,000: this one still earns at silver: 1,400 × 1.25 = 1,750
    assert tiered.purchase("o-3", "m", 140_000, "x", T_2026_06_01).points == 1_750
    # now gold: 10,000 × 1.5 / 100 = 150
    assert tiered.purchase("o-4", "m", 10_000, "x", T_2026_06_01).points == 150
    balance = tiered.balance("m", T_2026_06_01)
    assert (balance.tier, balance.spend_minor) == ("gold", 210_000)


def test_one_cent_below_the_threshold_stays(tiered):
    # 49,999: 499; then 1 cent: floor(0.01) = 0 at member, reaching 50,000; then silver.
    assert tiered.purchase("o-1", "m", 49_999, "x", T_2026_03_15).points == 499
    assert tiered.balance("m", T_2026_03_15).tier == "member"
    assert tiered.purchase("o-2", "m", 1, "x", T_2026_03_15).points == 0
    assert tiered.purchase("o-3", "m", 10_000, "x", T_2026_03_15).points == 125


def test_rollover_carries_the_tier_earned_into_the_next_year(tiered):
    tiered.purchase("o-1", "m", 50_000, "x", T_2026_03_15)  # 2026 spend 50,000: silver
    # 2027: C := tier_for(50,000) = silver; S := 0. Earns at silver: 125.
    assert tiered.purchase("o-2", "m", 10_000, "x", T_2027_03_15).points == 125
    balance = tiered.balance("m", T_2027_03_15)
    assert (balance.tier, balance.tier_year, balance.spend_minor) == ("silver", 2027, 10_000)
    # 2028: 2027's spend was only 10,000 → member; the carried silver is gone: 100.
    assert tiered.purchase("o-3", "m", 10_000, "x", T_2028_06_01).points == 100
    balance = tiered.balance("m", T_2028_06_01)
    assert (balance.tier, balance.tier_year, balance.spend_minor) == ("member", 2028, 10_000)


def test_carried_tier_and_spend_take_the_higher(tiered):
    tiered.purchase("o-1", "m", 50_000, "x", T_2026_03_15)  # silver for 2026, carried into 2027
    # 2027: 200,000 at carried silver: 2,500; spend 200,000 → gold beats the carried silver.
    assert tiered.purchase("o-2", "m", 200_000, "x", T_2027_03_15).points == 2_500
    assert tiered.purchase("o-3", "m", 10_000, "x", T_2027_03_15).points == 150
    assert tiered.balance("m", T_2027_03_15).tier == "gold"


def test_skipping_a_year_drops_to_the_lowest_tier(tiered):
    tiered.purchase("o-1", "m", 200_000, "x", T_2026_03_15)  # gold in 2026
    # Next event in 2028 (y = Y + 2): C := lowest. 10,000 at member: 100.
    assert tiered.purchase("o-2", "m", 10_000, "x", T_2028_06_01).points == 100
    assert tiered.balance("m", T_2028_06_01).tier == "member"


def test_late_event_earns_at_the_current_tier_and_counts_to_no_year(tiered):
    tiered.purchase("o-1", "m", 50_000, "x", T_2026_03_15)  # 2026: silver
    tiered.purchase("o-2", "m", 10_000, "x", T_2027_03_15)  # Y = 2027, C = silver, S = 10,000
    # A purchase dated 2026-06-01 arrives late: it earns at the current tier (silver):
    # 150,000 × 1.25 / 100 = 1,875, and its amount counts towards no year.
    assert tiered.purchase("late", "m", 150_000, "x", T_2026_06_01).points == 1_875
    balance = tiered.balance("m", T_2027_03_15)
    assert (balance.tier, balance.tier_year, balance.spend_minor) == ("silver", 2027, 10_000)
    # Had it counted to 2026, 2026 would be gold (200,000) and nothing changes either:
    # next 2027 purchase is still silver (125).
    assert tiered.purchase("o-3", "m", 10_000, "x", T_2027_03_15).points == 125


def test_refund_in_the_tier_year_lowers_spend(tiered):
    tiered.purchase("o-1", "m", 60_000, "x", T_2026_03_15)  # 600 points, silver
    assert tiered.balance("m", T_2026_03_15).tier == "silver"
    # Refund 20,000: spend 40,000 → member. Clawback floor(600 × 20000 / 60000) = 200.
    assert tiered.refund("r-1", "o-1", 20_000, T_2026_06_01).points == -200
    balance = tiered.balance("m", T_2026_06_01)
    assert (balance.tier, balance.spend_minor, balance.balance) == ("member", 40_000, 400)
    assert tiered.purchase("o-2", "m", 10_000, "x", T_2026_06_01).points == 100


def test_refund_of_an_earlier_years_purchase_leaves_spend_alone(tiered):
    tiered.purchase("o-1", "m", 60_000, "x", T_2026_03_15)  # 2026: silver
    tiered.purchase("o-2", "m", 10_000, "x", T_2027_03_15)  # 2027: S = 10,000, C = silver
    # Refunding the 2026 order in 2027: the purchase's year is not Y, spend stays 10,000.
    # Clawback floor(600 × 60000 / 60000) = 600.
    assert tiered.refund("r-1", "o-1", 60_000, T_2027_03_15).points == -600
    balance = tiered.balance("m", T_2027_03_15)
    assert (balance.tier, balance.spend_minor) == ("silver", 10_000)


def test_refund_that_rolls_the_year_resets_spend_before_judging_the_order(tiered):
    tiered.purchase("o-1", "m", 60_000, "x", T_2026_03_15)  # Y = 2026, S = 60,000
    # The refund is the member's first 2027 event: it rolls the year (C = silver, S = 0),
    # then the order's year (2026) is not Y, so S stays 0.
    tiered.refund("r-1", "o-1", 10_000, T_2027_03_15)
    balance = tiered.balance("m", T_2027_03_15)
    assert (balance.tier, balance.tier_year, balance.spend_minor) == ("silver", 2027, 0)


def test_balance_as_of_a_later_year_rolls_without_writing(tiered):
    tiered.purchase("o-1", "m", 50_000, "x", T_2026_03_15)
    before_entries, before_dump = entries(tiered), dump_ledger(tiered)
    later = tiered.balance("m", T_2027_03_15)
    assert (later.tier, later.tier_year, later.spend_minor) == ("silver", 2027, 0)
    two_later = tiered.balance("m", T_2028_06_01)
    assert (two_later.tier, two_later.tier_year, two_later.spend_minor) == ("member", 2028, 0)
    assert entries(tiered) == before_entries
    assert dump_ledger(tiered) == before_dump
    # And the stored state was not rolled: 2026 still shows its spend.
    now = tiered.balance("m", T_2026_06_01)
    assert (now.tier, now.tier_year, now.spend_minor) == ("silver", 2026, 50_000)


def test_balance_as_of_before_the_tier_year_reports_the_current_state(tiered):
    tiered.purchase("o-1", "m", 50_000, "x", T_2026_03_15)
    balance = tiered.balance("m", T_2025_06_01)
    assert (balance.tier, balance.tier_year, balance.spend_minor) == ("silver", 2026, 50_000)


def test_queries_and_refused_operations_do_not_roll_the_year(tiered):
    tiered.purchase("o-1", "m", 50_000, "x", T_2026_03_15)
    tiered.balance("m", T_2028_06_01)
    with pytest.raises(pointsledger.FailedPrecondition):
        tiered.redeem("rd-1", "m", 1_000_000, T_2028_06_01)  # refused: only 500 points
    with pytest.raises(pointsledger.FailedPrecondition):
        tiered.refund("r-1", "o-1", 50_001, T_2028_06_01)  # refused: over the amount
    with pytest.raises(pointsledger.NotFound):
        tiered.adjust("adj-1", "ghost", 5, "x", T_2028_06_01)
    tiered.expire(T_2028_06_01)
    again = tiered.purchase("o-1", "m", 50_000, "x", T_2026_03_15)  # a duplicate
    assert again.status == "DUPLICATE"
    # A 2027 purchase still sees 2026's spend carried: silver, 125.
    assert tiered.purchase("o-2", "m", 10_000, "x", T_2027_03_15).points == 125


def test_a_version_with_fewer_tiers_clamps_the_carried_rank(ledger):
    ledger.set_program(simple_program(tiers=TIERS))
    ledger.set_program(simple_program(
        effective_from=T_2027_03_01,
        tiers=[
            {"name": "member", "min_spend_minor": 0, "multiplier": 1},
            {"name": "silver", "min_spend_minor": 50_000, "multiplier": Decimal("1.1")},
        ],
    ))
    ledger.purchase("o-1", "m", 200_000, "x", T_2026_03_15)  # gold in 2026 (v1)
    # 2027-01-15 under v1: the roll carries rank 2 (gold): 10,000 × 1.5 / 100 = 150.
    assert ledger.purchase("o-2", "m", 10_000, "x", T_2027_01_15).points == 150
    # 2027-03-15 under v2 (2 tiers): rank 2 is clamped to 1 (silver ×1.1): 110.
    result = ledger.purchase("o-3", "m", 10_000, "x", T_2027_03_15)
    assert result.points == 110
    # balance 2,000 + 150 + 110 = 2,260; the entry records version 2.
    assert entries(ledger, from_seq=3) == [(3, "EARN", "m", "o-3", 110, 2_260, T_2027_03_15, 2)]
    assert ledger.balance("m", T_2027_03_15).tier == "silver"


def test_roll_uses_thresholds_of_the_version_at_the_rolling_event(ledger):
    ledger.set_program(simple_program(tiers=TIERS))
    # v2 from 2027-03-01 puts silver at 100,000.
    ledger.set_program(simple_program(
        effective_from=T_2027_03_01,
        tiers=[
            {"name": "member", "min_spend_minor": 0, "multiplier": 1},
            {"name": "silver", "min_spend_minor": 100_000, "multiplier": Decimal("1.25")},
        ],
    ))
    ledger.purchase("o-1", "m", 60_000, "x", T_2026_03_15)  # silver under v1
    # First 2027 event at 2027-03-15 (v2): tier_for(60,000) under v2 = member. 100 points.
    assert ledger.purchase("o-2", "m", 10_000, "x", T_2027_03_15).points == 100


def test_balance_in_a_later_year_uses_the_version_at_as_of(ledger):
    ledger.set_program(simple_program(tiers=TIERS))
    ledger.set_program(simple_program(
        effective_from=T_2027_03_01,
        tiers=[
            {"name": "member", "min_spend_minor": 0, "multiplier": 1},
            {"name": "silver", "min_spend_minor": 100_000, "multiplier": Decimal("1.25")},
        ],
    ))
    ledger.purchase("o-1", "m", 60_000, "x", T_2026_03_15)
    # as of 2027-01-15 (v1 in force): carried silver; as of 2027-03-15 (v2): member.
    assert ledger.balance("m", T_2027_01_15).tier == "silver"
    assert ledger.balance("m", T_2027_03_15).tier == "member"


def test_tier_before_the_first_purchase_of_a_member_created_late(ledger):
    # The member's Y is its first purchase's year, S = 0, C = lowest (§15).
    ledger.set_program(simple_program(tiers=TIERS, effective_from=T_MIN))
    ledger.purchase("o-1", "m", 300_000, "x", T_2027_03_15)  # member: 3,000 points
    assert ledger.balance("m", T_2027_03_15).tier == "gold"
    # A late 2026 purchase earns at the current tier (gold): 10,000 × 1.5 / 100 = 150
    assert ledger.purchase("o-2", "m", 10_000, "x", T_2026_03_15).points == 150
    assert ledger.balance("m", T_2027_03_15).spend_minor == 300_000
